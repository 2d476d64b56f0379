# Multi-stage build of the eventfold server. The binary carries its
# migrations and applies them on start.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY entity entity
COPY migration migration
COPY src src
RUN cargo build --release --locked --bin eventfold

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/eventfold --create-home eventfold
COPY --from=build /src/target/release/eventfold /usr/local/bin/eventfold
USER eventfold
WORKDIR /var/lib/eventfold
ENV LISTEN_ADDR=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["eventfold"]
CMD ["serve"]
