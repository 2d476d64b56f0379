// Starts GraphiQL on /graphql, with subscriptions over graphql-transport-ws
// at /graphql/ws. The headers typed in the header editor go with every
// HTTP request and, as the connection_init payload, with every WebSocket
// (so `{"Authorization": "Bearer <token>"}` works for both).
(function () {
  "use strict";
  var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  var fetcher = window.GraphiQL.createFetcher({
    url: "/graphql",
    subscriptionUrl: scheme + window.location.host + "/graphql/ws",
  });
  var intro = [
    "# eventfold's GraphQL API. With authentication on, put your token in",
    "# the Headers tab below: {\"Authorization\": \"Bearer <token>\"}",
    "# (`eventfold token --role admin` mints one). The event console is at /console.",
    "",
    "query Products {",
    "  products(first: 10) {",
    "    edges { node { id name price stock } }",
    "  }",
    "}",
    "",
  ].join("\n");
  var root = window.ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    window.React.createElement(window.GraphiQL, {
      fetcher: fetcher,
      defaultQuery: intro,
      defaultEditorToolsVisibility: "headers",
      shouldPersistHeaders: false,
    })
  );
})();
