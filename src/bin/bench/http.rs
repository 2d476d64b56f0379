//! A minimal keep-alive HTTP/1.1 client over one TCP connection: enough to
//! POST GraphQL and GET health checks, nothing more (no chunked bodies, no
//! TLS, no redirects). Uses only tokio's `net` feature.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::net::TcpStream;

/// Longest we wait for one response before calling the connection dead.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One persistent connection; requests on it are sequential.
pub(crate) struct Conn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
}

/// The parts of a response the bench looks at.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Conn {
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, host: addr.to_string(), buf: Vec::with_capacity(4096) })
    }

    pub(crate) async fn get(&mut self, path: &str) -> anyhow::Result<Response> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.round_trip(head.as_bytes()).await
    }

    /// POSTs a GraphQL request and returns `data`, failing on any error.
    pub(crate) async fn graphql(&mut self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body =
            serde_json::to_vec(&serde_json::json!({ "query": query, "variables": variables }))?;
        let mut request = format!(
            "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let response = self.round_trip(&request).await?;
        let mut json: Value = serde_json::from_slice(&response.body)
            .with_context(|| format!("HTTP {}: body is not JSON", response.status))?;
        if let Some(errors) = json.get("errors") {
            bail!("HTTP {}: GraphQL errors: {errors}", response.status);
        }
        if response.status != 200 {
            bail!("HTTP {}", response.status);
        }
        Ok(json.get_mut("data").map(Value::take).unwrap_or(Value::Null))
    }

    async fn round_trip(&mut self, request: &[u8]) -> anyhow::Result<Response> {
        tokio::time::timeout(TIMEOUT, async {
            self.write_all(request).await?;
            self.read_response().await
        })
        .await
        .context("request timed out")?
    }

    async fn write_all(&mut self, mut data: &[u8]) -> anyhow::Result<()> {
        while !data.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads more bytes into `buf`; an error if the peer closed.
    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 8192];
        loop {
            self.stream.readable().await?;
            match self.stream.try_read(&mut chunk) {
                Ok(0) => bail!("connection closed by the server"),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("non-UTF-8 header")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("bad Content-Length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("Transfer-Encoding {value} is not supported by the bench client");
            }
        }
        let length = length.context("response without Content-Length")?;
        let body_start = head_end + 4;
        while self.buf.len() < body_start + length {
            self.fill().await?;
        }
        let body = self.buf[body_start..body_start + length].to_vec();
        self.buf.drain(..body_start + length);
        Ok(Response { status, body })
    }
}

/// The server's `/metrics` text (authentication off).
pub(crate) async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut conn = Conn::connect(addr).await?;
    let response = conn.get("/metrics").await?;
    anyhow::ensure!(response.status == 200, "/metrics answered {}", response.status);
    Ok(String::from_utf8_lossy(&response.body).into_owned())
}

/// The value of the unlabelled sample `name` in a `/metrics` text.
pub(crate) fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
