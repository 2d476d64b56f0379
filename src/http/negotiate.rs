//! Content negotiation and operation inspection for GraphQL over HTTP.

use async_graphql::parser::parse_query;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use axum::http::{HeaderMap, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MediaType {
    GraphqlResponse,
    Json,
}

impl MediaType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            MediaType::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json; charset=utf-8",
        }
    }
}

/// Picks the response media type from `Accept`, honouring q-values. A
/// missing header means `application/json` (the legacy default of the
/// specification); `None` means nothing acceptable was offered.
pub(super) fn response_media_type(headers: &HeaderMap) -> Option<MediaType> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(MediaType::Json);
    };
    let mut best: Option<(f32, u8, MediaType)> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let essence = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces
            .filter_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()))
            .next()
            .unwrap_or(1.0);
        let (rank, media) = match essence.as_str() {
            "application/graphql-response+json" => (3, MediaType::GraphqlResponse),
            "application/json" => (2, MediaType::Json),
            "application/*" | "*/*" => (1, MediaType::GraphqlResponse),
            _ => continue,
        };
        if q <= 0.0 {
            continue;
        }
        if best.is_none_or(|(bq, br, _)| q > bq || (q == bq && rank > br)) {
            best = Some((q, rank, media));
        }
    }
    best.map(|(_, _, media)| media)
}

/// Whether the operation that would run is a mutation. Unparsable documents
/// are left to the executor, which reports the syntax error.
pub(super) fn is_mutation(query: &str, operation_name: Option<&str>) -> bool {
    let Ok(document) = parse_query(query) else { return false };
    match &document.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Mutation,
        DocumentOperations::Multiple(ops) => match operation_name {
            Some(name) => ops
                .iter()
                .any(|(n, op)| n.as_str() == name && op.node.ty == OperationType::Mutation),
            None => ops.values().any(|op| op.node.ty == OperationType::Mutation),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> Option<MediaType> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        response_media_type(&headers)
    }

    #[test]
    fn accept_header_selects_the_response_media_type() {
        assert_eq!(accept("application/graphql-response+json"), Some(MediaType::GraphqlResponse));
        assert_eq!(accept("application/json"), Some(MediaType::Json));
        assert_eq!(
            accept("application/json, application/graphql-response+json;q=0.9"),
            Some(MediaType::Json)
        );
        assert_eq!(accept("*/*"), Some(MediaType::GraphqlResponse));
        assert_eq!(accept("text/html"), None);
        assert_eq!(response_media_type(&HeaderMap::new()), Some(MediaType::Json));
    }

    #[test]
    fn mutations_are_recognised_by_operation() {
        assert!(is_mutation("mutation { a }", None));
        assert!(!is_mutation("{ a }", None));
        assert!(is_mutation("query Q { a } mutation M { b }", Some("M")));
        assert!(!is_mutation("query Q { a } mutation M { b }", Some("Q")));
        assert!(!is_mutation("not graphql", None));
    }
}
