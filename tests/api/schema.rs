//! `schema.graphql` must be exactly what the server serves.

#[test]
fn schema_graphql_matches_the_served_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let on_disk = std::fs::read_to_string(path).expect("schema.graphql exists");
    let served = eventfold::graphql::sdl();
    assert!(
        on_disk == served,
        "schema.graphql is stale: run `cargo run -- export-schema` and commit the result"
    );
}

#[tokio::test]
async fn the_running_server_serves_the_exported_schema() {
    // Introspect the live server and check every type it reports appears in
    // the exported SDL with the same fields.
    let app = crate::helpers::spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let data = app
        .gql("{ __schema { types { name kind fields { name } } } }", serde_json::json!({}))
        .await
        .ok();
    let sdl = eventfold::graphql::sdl();
    for ty in data["__schema"]["types"].as_array().unwrap() {
        let name = ty["name"].as_str().unwrap();
        if name.starts_with("__")
            || ty["kind"] == "SCALAR" && ["String", "Int", "Float", "Boolean", "ID"].contains(&name)
        {
            continue;
        }
        assert!(sdl.contains(name), "type {name} missing from schema.graphql");
        for field in ty["fields"].as_array().into_iter().flatten() {
            let field = field["name"].as_str().unwrap();
            assert!(sdl.contains(field), "field {name}.{field} missing from schema.graphql");
        }
    }
    app.stop().await;
}
