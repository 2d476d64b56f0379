//! Parsed documents kept by their text: clients send the same few
//! documents again and again (a deposit, an account read), and parsing one
//! costs the engine ~20 µs where a copy of it costs under 1 µs.
//!
//! The cache sits innermost among the extensions, where the engine parses:
//! the root-field limit still runs on every request before it, and what it
//! keeps has passed the engine's own checks at parse time (recursion depth,
//! directives per field). Validation still runs on every request, against
//! its variables. Each request gets its own copy, so what the engine does
//! to a document for one request (dropping `@skip`ped fields) never reaches
//! another. Documents that do not parse are not kept; neither are long
//! ones, and at most [`MOST_DOCUMENTS`] are kept, so a client sending
//! ever-new documents costs a bounded amount of memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};

/// Most documents kept.
const MOST_DOCUMENTS: usize = 256;

/// Longest document (in bytes) that is kept.
const LONGEST_KEPT: usize = 8 * 1024;

/// The extension, shared by every request of one schema.
#[derive(Clone, Default)]
pub(super) struct DocumentCache {
    kept: Arc<Mutex<Kept>>,
}

#[derive(Default)]
struct Kept {
    documents: HashMap<Box<str>, Arc<ExecutableDocument>>,
    /// Documents parsed (successfully) because none was kept for their
    /// text; a hit counts nothing.
    parsed: u64,
}

impl DocumentCache {
    /// How many documents are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().documents.len()
    }

    /// How many times a document was parsed (successfully) because none
    /// was kept for its text.
    #[cfg(test)]
    fn parsed(&self) -> u64 {
        self.lock().parsed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding the lock leaves a map that is still whole.
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.lock().documents.get(query).cloned()
    }

    fn keep(&self, query: &str, document: &ExecutableDocument) {
        metrics::counter!("eventfold_graphql_documents_parsed_total").increment(1);
        let copy = (query.len() <= LONGEST_KEPT).then(|| Arc::new(document.clone()));
        let mut kept = self.lock();
        kept.parsed += 1;
        let Some(copy) = copy else { return };
        if kept.documents.len() >= MOST_DOCUMENTS {
            // Any one goes (the map's order is arbitrary): a bound on
            // memory, not a policy; the documents that matter come back.
            let any = kept.documents.keys().next().cloned();
            if let Some(any) = any {
                kept.documents.remove(&any);
            }
        }
        kept.documents.insert(query.into(), copy);
    }
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Extension for DocumentCache {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(document) = self.get(query) {
            return Ok(ExecutableDocument::clone(&document));
        }
        let document = next.run(ctx, query, variables).await?;
        self.keep(query, &document);
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, Value};

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn twice(&self, n: i32) -> i32 {
            n * 2
        }
        async fn name(&self) -> &str {
            "eventfold"
        }
    }

    fn schema(cache: &DocumentCache) -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription).extension(cache.clone()).finish()
    }

    async fn run(
        schema: &Schema<Query, EmptyMutation, EmptySubscription>,
        query: &str,
        variables: serde_json::Value,
    ) -> async_graphql::Response {
        let request = async_graphql::Request::new(query).variables(Variables::from_json(variables));
        schema.execute(request).await
    }

    #[tokio::test]
    async fn a_document_sent_again_is_not_parsed_again_and_answers_with_its_own_variables() {
        let cache = DocumentCache::default();
        let schema = schema(&cache);
        let query = "query($n: Int!) { twice(n: $n) }";
        for n in [1, 2, 3] {
            let response = run(&schema, query, serde_json::json!({ "n": n })).await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            assert_eq!(response.data.into_json().unwrap(), serde_json::json!({ "twice": n * 2 }));
        }
        assert_eq!(cache.parsed(), 1, "parsed once, then copied");
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn what_one_request_skips_does_not_leave_the_kept_document() {
        let cache = DocumentCache::default();
        let schema = schema(&cache);
        let query = "query($show: Boolean!) { name @include(if: $show) twice(n: 4) }";
        let shown = serde_json::json!({ "name": "eventfold", "twice": 8 });
        let hidden = serde_json::json!({ "twice": 8 });
        for (show, expected) in [(true, &shown), (false, &hidden), (true, &shown)] {
            let response = run(&schema, query, serde_json::json!({ "show": show })).await;
            assert_eq!(&response.data.into_json().unwrap(), expected, "show = {show}");
        }
        assert_eq!(cache.parsed(), 1);
    }

    #[tokio::test]
    async fn documents_that_do_not_parse_are_refused_every_time_and_not_kept() {
        let cache = DocumentCache::default();
        let schema = schema(&cache);
        for _ in 0..2 {
            let response = run(&schema, "{ twice(n: ", serde_json::json!({})).await;
            assert_eq!(response.data, Value::Null);
            assert_eq!(response.errors.len(), 1, "{:?}", response.errors);
        }
        assert_eq!((cache.parsed(), cache.len()), (0, 0));
    }

    #[tokio::test]
    async fn the_cache_holds_a_bounded_number_of_documents_and_none_too_long() {
        let cache = DocumentCache::default();
        let schema = schema(&cache);
        for n in 0..MOST_DOCUMENTS + 10 {
            let response =
                run(&schema, &format!("{{ twice(n: {n}) }}"), serde_json::json!({})).await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
        }
        assert_eq!(cache.len(), MOST_DOCUMENTS);
        let long = format!("{{ name {} }}", " ".repeat(LONGEST_KEPT));
        for _ in 0..2 {
            let response = run(&schema, &long, serde_json::json!({})).await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
        }
        assert_eq!(
            cache.parsed(),
            MOST_DOCUMENTS as u64 + 10 + 2,
            "a long one is parsed each time"
        );
        assert_eq!(cache.len(), MOST_DOCUMENTS);
    }
}
