//! What one GraphQL document may ask for: its depth and complexity (checked
//! by the engine during validation) and the number of root fields of each
//! operation (checked here, before the document is even parsed).
//!
//! Every root field is a resolver call that may read a table or wait for
//! `minPosition`; aliases make one field many (`a1: account(…) a2:
//! account(…) …`). Counting them from the document's tokens, before the
//! engine parses and validates it, refuses such a document for the cost of
//! one scan: parsing a document of thousands of aliases takes the engine
//! far longer, and validating it longer still (its overlapping-fields check
//! grows with the square of the fields).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, Variables};

/// Deepest selection nesting. The deepest query of the API (an order's
/// items inside `orders`' edges) is 5 deep; the introspection query that
/// GraphiQL sends is about 13.
pub const MAX_DEPTH: usize = 16;

/// Highest complexity (one point per selected field).
pub const MAX_COMPLEXITY: usize = 5_000;

/// Refuses a document with an operation of more than `0` root fields
/// (aliases and fields of fragments included) with `VALIDATION_ERROR`.
///
/// Every operation of the document counts, not only the one executed: the
/// engine parses and validates them all.
pub struct MaxRootFields(pub usize);

impl ExtensionFactory for MaxRootFields {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(MaxRootFieldsExtension { max: self.0 })
    }
}

struct MaxRootFieldsExtension {
    max: usize,
}

#[async_trait::async_trait]
impl Extension for MaxRootFieldsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let most = most_root_fields(query);
        if most > self.max {
            let message = format!(
                "an operation may select at most {} root fields (aliases included); this one selects {}",
                self.max,
                if most == usize::MAX { "too many".to_owned() } else { most.to_string() }
            );
            let mut error = ServerError::new(message, None);
            error.extensions.get_or_insert_with(Default::default).set("code", "VALIDATION_ERROR");
            return Err(error);
        }
        next.run(ctx, query, variables).await
    }
}

/// Deepest nesting of inline fragments and fragment spreads at the root
/// level that is counted; a deeper document counts as too many fields
/// (nothing real nests them that deep, and counting must stay bounded).
const MAX_FRAGMENT_NESTING: usize = 32;

/// The most root fields any operation of `document` selects, fields of
/// fragments and inline fragments included, each spread counted for what
/// its fragment selects. Counted from tokens, without parsing: for a
/// document that does not parse, the count means nothing (the parser then
/// reports the error).
pub fn most_root_fields(document: &str) -> usize {
    let tokens = tokens(document);
    let mut definitions = Definitions::default();
    let mut at = 0;
    while at < tokens.len() {
        let fragment = match tokens[at] {
            Token::Name("fragment") => match tokens.get(at + 1) {
                Some(Token::Name(name)) => Some(*name),
                _ => break,
            },
            _ => None,
        };
        // The header (name, variables, directives) runs to the selection set.
        let mut parens = 0usize;
        while at < tokens.len() && !(parens == 0 && tokens[at] == Token::Punct(b'{')) {
            match tokens[at] {
                Token::Punct(b'(') => parens += 1,
                Token::Punct(b')') => parens = parens.saturating_sub(1),
                _ => {}
            }
            at += 1;
        }
        let Some(set) = root_items(&tokens, &mut at, 0) else { break };
        match fragment {
            Some(name) => {
                definitions.fragments.insert(name, set);
            }
            None => definitions.operations.push(set),
        }
    }
    definitions.most()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Name(&'a str),
    /// `...`
    Spread,
    Punct(u8),
    /// A string, a number or a variable's `$`: nothing that shapes selections.
    Value,
}

/// The tokens of a GraphQL document (whitespace, commas and comments
/// dropped; strings and numbers as [`Token::Value`]).
fn tokens(document: &str) -> Vec<Token<'_>> {
    let bytes = document.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                i += 3;
                out.push(Token::Value);
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push(Token::Value);
                continue;
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                out.push(Token::Spread);
                i += 3;
                continue;
            }
            b'_' | b'A'..=b'Z' | b'a'..=b'z' => {
                let start = i;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                out.push(Token::Name(&document[start..i]));
                continue;
            }
            b'-' | b'0'..=b'9' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'-' | b'+' | b'.'))
                {
                    i += 1;
                }
                out.push(Token::Value);
                continue;
            }
            b'{' | b'}' | b'(' | b')' | b':' | b'@' => out.push(Token::Punct(b)),
            b'$' | b'!' | b'=' | b'[' | b']' | b'&' | b'|' => out.push(Token::Value),
            _ => {}
        }
        i += 1;
    }
    out
}

/// What a selection set selects at its own level.
#[derive(Debug, Default)]
struct Items<'a> {
    fields: usize,
    spreads: Vec<&'a str>,
}

/// Reads the selection set at `tokens[*at]` (a `{`) up to its `}`:
/// its fields, and the fragments it spreads, with inline fragments' items
/// merged in. `None` if it is not a well-formed selection set.
fn root_items<'a>(tokens: &[Token<'a>], at: &mut usize, nesting: usize) -> Option<Items<'a>> {
    if tokens.get(*at) != Some(&Token::Punct(b'{')) {
        return None;
    }
    *at += 1;
    let mut items = Items::default();
    loop {
        match *tokens.get(*at)? {
            Token::Punct(b'}') => {
                *at += 1;
                return Some(items);
            }
            Token::Name(_) => {
                *at += 1;
                if tokens.get(*at) == Some(&Token::Punct(b':')) {
                    *at += 2;
                }
                skip_balanced(tokens, at, b'(', b')');
                skip_directives(tokens, at);
                skip_balanced(tokens, at, b'{', b'}');
                items.fields = items.fields.saturating_add(1);
            }
            Token::Spread => {
                *at += 1;
                match tokens.get(*at) {
                    Some(Token::Name(name)) if *name != "on" => {
                        items.spreads.push(name);
                        *at += 1;
                        skip_directives(tokens, at);
                    }
                    _ => {
                        if tokens.get(*at) == Some(&Token::Name("on")) {
                            *at += 2;
                        }
                        skip_directives(tokens, at);
                        if nesting >= MAX_FRAGMENT_NESTING {
                            items.fields = usize::MAX;
                            skip_balanced(tokens, at, b'{', b'}');
                            continue;
                        }
                        let inline = root_items(tokens, at, nesting + 1)?;
                        items.fields = items.fields.saturating_add(inline.fields);
                        items.spreads.extend(inline.spreads);
                    }
                }
            }
            _ => return None,
        }
    }
}

/// Skips `@name(args)` directives.
fn skip_directives(tokens: &[Token<'_>], at: &mut usize) {
    while tokens.get(*at) == Some(&Token::Punct(b'@')) {
        *at += 2;
        skip_balanced(tokens, at, b'(', b')');
    }
}

/// Skips a balanced `open … close` group if one starts at `*at`.
fn skip_balanced(tokens: &[Token<'_>], at: &mut usize, open: u8, close: u8) {
    if tokens.get(*at) != Some(&Token::Punct(open)) {
        return;
    }
    let mut depth = 0usize;
    while let Some(token) = tokens.get(*at) {
        *at += 1;
        match token {
            Token::Punct(b) if *b == open => depth += 1,
            Token::Punct(b) if *b == close => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// The document's operations and fragments, by what they select at root.
#[derive(Default)]
struct Definitions<'a> {
    operations: Vec<Items<'a>>,
    fragments: HashMap<&'a str, Items<'a>>,
}

impl<'a> Definitions<'a> {
    fn most(&self) -> usize {
        let mut known = HashMap::new();
        self.operations.iter().map(|op| self.count(op, &mut known, 0)).max().unwrap_or(0)
    }

    /// The fields `items` selects through its spreads; each fragment is
    /// counted once and remembered (`None` while being counted: a cycle,
    /// which validation refuses anyway, counts as nothing).
    fn count(
        &self,
        items: &Items<'a>,
        known: &mut HashMap<&'a str, Option<usize>>,
        nesting: usize,
    ) -> usize {
        if nesting > MAX_FRAGMENT_NESTING {
            return usize::MAX;
        }
        items.spreads.iter().fold(items.fields, |sum, name| {
            let n = match known.get(name) {
                Some(n) => n.unwrap_or(0),
                None => match self.fragments.get(name) {
                    Some(fragment) => {
                        known.insert(name, None);
                        let n = self.count(fragment, known, nesting + 1);
                        known.insert(name, Some(n));
                        n
                    }
                    None => 0,
                },
            };
            sum.saturating_add(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use async_graphql::parser::types::{Selection, SelectionSet};

    use super::*;

    /// The same count from the parsed document: the oracle the token count
    /// must agree with on valid documents.
    fn parsed(document: &str) -> usize {
        fn fields(doc: &ExecutableDocument, set: &SelectionSet, depth: usize) -> usize {
            set.items
                .iter()
                .map(|item| match &item.node {
                    Selection::Field(_) => 1,
                    Selection::InlineFragment(f) => fields(doc, &f.node.selection_set.node, depth),
                    Selection::FragmentSpread(s) if depth < 8 => doc
                        .fragments
                        .get(&s.node.fragment_name.node)
                        .map_or(0, |f| fields(doc, &f.node.selection_set.node, depth + 1)),
                    Selection::FragmentSpread(_) => 0,
                })
                .sum()
        }
        let doc = parse_query(document).unwrap();
        doc.operations
            .iter()
            .map(|(_, op)| fields(&doc, &op.node.selection_set.node, 0))
            .max()
            .unwrap()
    }

    #[test]
    fn aliases_fragments_and_inline_fragments_all_count_as_the_parser_sees_them() {
        let documents = [
            ("{ a b c: a }", 3),
            ("{ a ...F ... on Query { b c } } fragment F on Query { d e f }", 6),
            ("{ ...F ...F } fragment F on Query { a b }", 4),
            ("{ ...F } fragment F on Query { a ...G } fragment G on Query { b c }", 3),
            ("{ a { b c d e } }", 1),
            ("query A { a } query B { a b c }", 3),
            (
                r#"query Q($x: In = { a: 1, b: [2] }) @d(x: "}") { a(x: { y: "{{" }) @skip(if: $s) { b } c }"#,
                2,
            ),
            ("# { x y z }\n{ a(s: \"\"\" { b c \\\"\"\" } \"\"\") b }", 2),
            (r#"{ a: f(s: "\" } {") b: f(n: -1.5e3) ... @include(if: true) { c } }"#, 3),
            ("mutation { a(input: { x: 1 }) { id } b(input: { x: 2 }) { id } }", 2),
            ("subscription S { s { id } }", 1),
            ("{ ...on }", 0),
        ];
        for (document, expected) in documents {
            if expected > 0 {
                assert_eq!(parsed(document), expected, "oracle: {document}");
            }
            assert_eq!(most_root_fields(document), expected, "{document}");
        }
    }

    #[test]
    fn thousands_of_aliases_are_counted_quickly() {
        let fields: Vec<String> = (0..2_400)
            .map(|i| format!(r#"a{i}: product(id: "x", minPosition: "1.1") {{ id }}"#))
            .collect();
        let document = format!("{{ {} }}", fields.join(" "));
        assert_eq!(most_root_fields(&document), 2_400);
    }

    #[test]
    fn cycles_do_not_hang_and_nested_spreads_are_not_expanded() {
        assert_eq!(most_root_fields("{ ...F } fragment F on Query { a ...F }"), 1);
        // 2^30 fields if expanded; counted in 30 steps.
        let mut document = String::from("{ ...F0 } ");
        for i in 0..30 {
            document.push_str(&format!(
                "fragment F{i} on Query {{ ...F{} ...F{} }} ",
                i + 1,
                i + 1
            ));
        }
        document.push_str("fragment F30 on Query { a }");
        assert_eq!(most_root_fields(&document), 1 << 30);
        let shallow = "{ ...F0 } fragment F0 on Query { ...F1 ...F1 } fragment F1 on Query { a b }";
        assert_eq!(most_root_fields(shallow), 4);
    }

    #[test]
    fn fragments_nested_too_deep_count_as_too_many() {
        let mut document = String::from("{ ...F0 } ");
        for i in 0..1000 {
            document.push_str(&format!("fragment F{i} on Query {{ ...F{} }} ", i + 1));
        }
        document.push_str("fragment F1000 on Query { a }");
        assert_eq!(most_root_fields(&document), usize::MAX);
        let inline = format!("{{ {} a {} }}", "... { ".repeat(100), "}".repeat(100));
        assert_eq!(most_root_fields(&inline), usize::MAX);
    }

    #[test]
    fn what_does_not_parse_counts_for_nothing_in_particular() {
        for garbage in ["", "{", "}", "{ a", "not graphql", "{ a: }", "{ ... }", "query ("] {
            let _ = most_root_fields(garbage);
        }
    }
}
