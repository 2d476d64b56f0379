//! `schema.graphql` must be exactly what the server serves: the file equals
//! the exported SDL, and, parsed, it describes the same schema that a client
//! introspecting the running server sees (types, fields, arguments, defaults,
//! descriptions, enum values, deprecations, `@specifiedBy` URLs, directives).

use std::collections::BTreeMap;

use async_graphql::parser::types::{
    BaseType, ConstDirective, DirectiveDefinition, FieldDefinition, InputValueDefinition,
    ServiceDocument, Type, TypeKind, TypeSystemDefinition,
};
use async_graphql::parser::{Positioned, parse_schema};
use serde_json::{Map, Value, json};

fn on_disk() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    std::fs::read_to_string(path).expect("schema.graphql exists")
}

#[test]
fn schema_graphql_matches_the_served_schema() {
    let served = eventfold::graphql::sdl();
    assert!(
        on_disk() == served,
        "schema.graphql is stale: run `cargo run -- export-schema` and commit the result"
    );
}

#[tokio::test]
async fn schema_graphql_describes_what_introspection_of_the_running_server_shows() {
    let app = crate::helpers::spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let data = app.gql(INTROSPECTION, json!({})).await.ok();
    app.stop().await;
    let served = from_introspection(&data["__schema"]);
    let document = parse_schema(on_disk()).expect("schema.graphql parses");
    let written = from_sdl(&document);
    for (name, shape) in &served {
        let mut shape = shape.clone();
        if spec_directive(name) {
            if !written.contains_key(name) {
                continue; // SDL may leave the specification's own directives out
            }
            // async-graphql's SDL prints no argument descriptions for them.
            for arg in shape["args"].as_object_mut().unwrap().values_mut() {
                arg["description"] = Value::Null;
            }
        }
        let shape = &shape;
        assert_eq!(
            written.get(name),
            Some(shape),
            "{name} differs between schema.graphql and introspection"
        );
    }
    for name in written.keys() {
        assert!(served.contains_key(name), "{name} is in schema.graphql but not served");
    }
}

const INTROSPECTION: &str = r#"
query {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types {
      kind name description specifiedByURL
      fields(includeDeprecated: true) {
        name description isDeprecated deprecationReason type { ...T }
        args { name description defaultValue type { ...T } }
      }
      inputFields { name description defaultValue type { ...T } }
      interfaces { name }
      possibleTypes { name }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
    }
    directives { name description locations args { name description defaultValue type { ...T } } }
  }
}
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }
"#;

/// Names the schema always has, which SDL does not spell out.
fn built_in(name: &str) -> bool {
    name.starts_with("__") || ["String", "Int", "Float", "Boolean", "ID"].contains(&name)
}

/// The directives the GraphQL specification defines.
fn spec_directive(name: &str) -> bool {
    ["@deprecated", "@include", "@skip", "@specifiedBy", "@oneOf"].contains(&name)
}

/// A type reference from introspection, written as in SDL (`[String!]!`).
fn type_ref(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_ref(&t["ofType"])),
        Some("LIST") => format!("[{}]", type_ref(&t["ofType"])),
        _ => t["name"].as_str().unwrap_or_default().to_owned(),
    }
}

fn text(v: &Value) -> Value {
    v.as_str().map_or(Value::Null, |s| Value::String(s.trim().to_owned()))
}

fn inputs(values: &Value) -> Value {
    let mut out = Map::new();
    for v in values.as_array().into_iter().flatten() {
        let shape = json!({
            "description": text(&v["description"]),
            "type": type_ref(&v["type"]),
            "default": v["defaultValue"],
        });
        out.insert(v["name"].as_str().unwrap().to_owned(), shape);
    }
    Value::Object(out)
}

fn names(values: &Value) -> Value {
    let mut names: Vec<&str> =
        values.as_array().into_iter().flatten().filter_map(|v| v["name"].as_str()).collect();
    names.sort();
    json!(names)
}

fn deprecation(v: &Value) -> Value {
    if v["isDeprecated"] == true { text(&v["deprecationReason"]) } else { json!(false) }
}

/// Every named thing of an introspected schema, normalised.
fn from_introspection(schema: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let roots =
        ["queryType", "mutationType", "subscriptionType"].map(|r| schema[r]["name"].clone());
    out.insert("schema".to_owned(), json!(roots));
    for t in schema["types"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        if built_in(name) {
            continue;
        }
        let mut fields = Map::new();
        for f in t["fields"].as_array().into_iter().flatten() {
            let shape = json!({
                "description": text(&f["description"]),
                "type": type_ref(&f["type"]),
                "args": inputs(&f["args"]),
                "deprecated": deprecation(f),
            });
            fields.insert(f["name"].as_str().unwrap().to_owned(), shape);
        }
        let mut values = Map::new();
        for v in t["enumValues"].as_array().into_iter().flatten() {
            let shape =
                json!({ "description": text(&v["description"]), "deprecated": deprecation(v) });
            values.insert(v["name"].as_str().unwrap().to_owned(), shape);
        }
        let shape = json!({
            "kind": t["kind"],
            "description": text(&t["description"]),
            "specifiedBy": t["specifiedByURL"],
            "fields": fields,
            "inputFields": inputs(&t["inputFields"]),
            "interfaces": names(&t["interfaces"]),
            "possibleTypes": names(&t["possibleTypes"]),
            "enumValues": values,
        });
        out.insert(name.to_owned(), shape);
    }
    for d in schema["directives"].as_array().unwrap() {
        let mut locations: Vec<&str> =
            d["locations"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        locations.sort();
        let shape = json!({
            "description": text(&d["description"]),
            "locations": locations,
            "args": inputs(&d["args"]),
        });
        out.insert(format!("@{}", d["name"].as_str().unwrap()), shape);
    }
    out
}

fn sdl_type(ty: &Type) -> String {
    let base = match &ty.base {
        BaseType::Named(name) => name.to_string(),
        BaseType::List(inner) => format!("[{}]", sdl_type(inner)),
    };
    if ty.nullable { base } else { format!("{base}!") }
}

fn sdl_text(description: &Option<Positioned<String>>) -> Value {
    description.as_ref().map_or(Value::Null, |d| Value::String(d.node.trim().to_owned()))
}

fn sdl_inputs(values: &[Positioned<InputValueDefinition>]) -> Value {
    let mut out = Map::new();
    for v in values.iter().map(|v| &v.node) {
        let shape = json!({
            "description": sdl_text(&v.description),
            "type": sdl_type(&v.ty.node),
            "default": v.default_value.as_ref().map(|d| d.node.to_string()),
        });
        out.insert(v.name.node.to_string(), shape);
    }
    Value::Object(out)
}

fn sdl_deprecation(directives: &[Positioned<ConstDirective>]) -> Value {
    let Some(d) = directives.iter().find(|d| d.node.name.node == "deprecated") else {
        return json!(false);
    };
    match d.node.get_argument("reason") {
        Some(reason) => match &reason.node {
            async_graphql::Value::String(s) => json!(s.trim()),
            other => json!(other.to_string()),
        },
        None => json!("No longer supported"),
    }
}

fn sdl_fields(fields: &[Positioned<FieldDefinition>]) -> Map<String, Value> {
    let mut out = Map::new();
    for f in fields.iter().map(|f| &f.node) {
        let shape = json!({
            "description": sdl_text(&f.description),
            "type": sdl_type(&f.ty.node),
            "args": sdl_inputs(&f.arguments),
            "deprecated": sdl_deprecation(&f.directives),
        });
        out.insert(f.name.node.to_string(), shape);
    }
    out
}

/// `FragmentSpread` as introspection names it, `FRAGMENT_SPREAD`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn sdl_directive(d: &DirectiveDefinition) -> Value {
    let mut locations: Vec<String> =
        d.locations.iter().map(|l| screaming_snake(&format!("{:?}", l.node))).collect();
    locations.sort();
    json!({
        "description": sdl_text(&d.description),
        "locations": locations,
        "args": sdl_inputs(&d.arguments),
    })
}

/// Every named thing of a parsed SDL document, normalised like
/// [`from_introspection`].
fn from_sdl(document: &ServiceDocument) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for definition in &document.definitions {
        match definition {
            TypeSystemDefinition::Schema(s) => {
                let name = |n: &Option<Positioned<async_graphql::Name>>| {
                    n.as_ref().map(|n| json!(n.node.as_str())).unwrap_or(Value::Null)
                };
                let s = &s.node;
                out.insert(
                    "schema".to_owned(),
                    json!([name(&s.query), name(&s.mutation), name(&s.subscription)]),
                );
            }
            TypeSystemDefinition::Directive(d) => {
                out.insert(format!("@{}", d.node.name.node), sdl_directive(&d.node));
            }
            TypeSystemDefinition::Type(t) => {
                let t = &t.node;
                let specified_by = t
                    .directives
                    .iter()
                    .find(|d| d.node.name.node == "specifiedBy")
                    .and_then(|d| d.node.get_argument("url"))
                    .map(|url| match &url.node {
                        async_graphql::Value::String(s) => json!(s),
                        other => json!(other.to_string()),
                    })
                    .unwrap_or(Value::Null);
                let (kind, fields, input_fields, interfaces, members, values) = match &t.kind {
                    TypeKind::Scalar => {
                        ("SCALAR", Map::new(), json!({}), vec![], vec![], Map::new())
                    }
                    TypeKind::Object(o) => {
                        let implements = o.implements.iter().map(|n| n.node.to_string()).collect();
                        ("OBJECT", sdl_fields(&o.fields), json!({}), implements, vec![], Map::new())
                    }
                    TypeKind::Interface(i) => {
                        let implements = i.implements.iter().map(|n| n.node.to_string()).collect();
                        (
                            "INTERFACE",
                            sdl_fields(&i.fields),
                            json!({}),
                            implements,
                            vec![],
                            Map::new(),
                        )
                    }
                    TypeKind::Union(u) => {
                        let members = u.members.iter().map(|n| n.node.to_string()).collect();
                        ("UNION", Map::new(), json!({}), vec![], members, Map::new())
                    }
                    TypeKind::Enum(e) => {
                        let mut values = Map::new();
                        for v in e.values.iter().map(|v| &v.node) {
                            let shape = json!({
                                "description": sdl_text(&v.description),
                                "deprecated": sdl_deprecation(&v.directives),
                            });
                            values.insert(v.value.node.to_string(), shape);
                        }
                        ("ENUM", Map::new(), json!({}), vec![], vec![], values)
                    }
                    TypeKind::InputObject(i) => (
                        "INPUT_OBJECT",
                        Map::new(),
                        sdl_inputs(&i.fields),
                        vec![],
                        vec![],
                        Map::new(),
                    ),
                };
                let sorted = |mut v: Vec<String>| {
                    v.sort();
                    json!(v)
                };
                let shape = json!({
                    "kind": kind,
                    "description": sdl_text(&t.description),
                    "specifiedBy": specified_by,
                    "fields": fields,
                    "inputFields": input_fields,
                    "interfaces": sorted(interfaces),
                    "possibleTypes": sorted(members),
                    "enumValues": values,
                });
                out.insert(t.name.node.to_string(), shape);
            }
        }
    }
    out
}
