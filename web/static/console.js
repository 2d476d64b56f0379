// The event console: plain DOM and the GraphQL API, nothing else.
(function () {
  "use strict";
  var TOKEN_KEY = "eventfold.console.token";
  var $ = function (id) { return document.getElementById(id); };
  var current = null; // { type, id, version } of the open stream
  var tailTimer = null;

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function say(text) { $("status").textContent = text || ""; }

  // Runs one GraphQL operation; resolves with data or rejects with the
  // first error's message and code.
  function gql(query, variables) {
    var headers = { "Content-Type": "application/json", "Accept": "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    return fetch("/graphql", {
      method: "POST",
      headers: headers,
      body: JSON.stringify({ query: query, variables: variables || {} }),
    }).then(function (r) { return r.json(); }).then(function (body) {
      if (body.errors && body.errors.length) {
        var e = body.errors[0];
        var code = e.extensions && e.extensions.code ? e.extensions.code + ": " : "";
        throw new Error(code + e.message);
      }
      return body.data;
    });
  }

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (c) {
      var td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c;
      tr.appendChild(td);
    });
    return tr;
  }

  function pretty(value) { return el("pre", JSON.stringify(value, null, 2)); }

  function button(label, onClick) {
    var b = el("button", label, { type: "button" });
    b.addEventListener("click", onClick);
    return b;
  }

  function fail(e) { say(e.message || String(e)); }

  // Stream types with counts; a type lists its streams.
  function loadTypes() {
    return gql("{ streamTypes { streamType streams events } }").then(function (d) {
      var body = $("types").tBodies[0];
      body.replaceChildren();
      d.streamTypes.forEach(function (t) {
        var open = button(t.streamType, function () { listStreams({ streamType: t.streamType }); });
        body.appendChild(row([open, t.streams, t.events]));
      });
    });
  }

  function listStreams(variables) {
    var q = "query($streamType: String, $streamId: UUID) { streams(streamType: $streamType, streamId: $streamId, first: 50) { edges { node { streamType streamId version } } } }";
    return gql(q, variables).then(function (d) {
      var body = $("streams").tBodies[0];
      body.replaceChildren();
      if (!d.streams.edges.length) say("no stream found");
      d.streams.edges.forEach(function (e) {
        var s = e.node;
        var open = button(s.streamId, function () { openStream(s.streamType, s.streamId); });
        open.setAttribute("aria-label", "Open " + s.streamType + " " + s.streamId);
        body.appendChild(row([s.streamType, open, s.version]));
      });
    }).catch(fail);
  }

  var EVENTS = "query($t: String!, $id: UUID!, $after: String) { streamEvents(streamType: $t, streamId: $id, first: 100, after: $after) { edges { cursor node { position eventId version eventType recordedAt payload metadata } } pageInfo { hasNextPage } } }";

  function idLink(label, id) {
    var wrap = el("span");
    wrap.appendChild(document.createTextNode(label + ": "));
    wrap.appendChild(el("a", id, { href: "#event-" + id, title: label + " " + id }));
    return wrap;
  }

  function eventRow(e) {
    var meta = document.createElement("div");
    var m = e.metadata || {};
    if (m.correlation_id) meta.appendChild(idLink("correlation", m.correlation_id));
    if (m.causation_id) { meta.appendChild(el("br")); meta.appendChild(idLink("causation", m.causation_id)); }
    meta.appendChild(pretty(m));
    var tr = row([e.version, e.eventType, e.recordedAt, pretty(e.payload), meta]);
    tr.id = "event-" + e.eventId;
    return tr;
  }

  function openStream(type, id) {
    stopTail();
    current = { type: type, id: id, version: 0 };
    $("stream-section").hidden = false;
    $("stream-title").textContent = type + " " + id;
    $("state").textContent = "";
    var body = $("events").tBodies[0];
    body.replaceChildren();
    return gql(EVENTS, { t: type, id: id }).then(function (d) {
      d.streamEvents.edges.forEach(function (edge) {
        body.appendChild(eventRow(edge.node));
        current.version = edge.node.version;
      });
      $("state-version").value = current.version;
      startTail();
    }).catch(fail);
  }

  function foldState(ev) {
    ev.preventDefault();
    if (!current) return;
    var v = parseInt($("state-version").value, 10);
    var q = "query($t: String!, $id: UUID!, $v: Int) { aggregateState(streamType: $t, streamId: $id, version: $v) { version state } }";
    gql(q, { t: current.type, id: current.id, v: isNaN(v) ? null : v }).then(function (d) {
      var s = d.aggregateState;
      $("state").textContent = s ? "version " + s.version + "\n" + JSON.stringify(s.state, null, 2) : "no events";
    }).catch(fail);
  }

  // Live tail: the `events` subscription of the whole log when the server
  // has it, else polling the open stream's history.
  function tailLine(e) {
    var li = el("li", e.position + " · " + e.streamType + " " + e.streamId + " v" + e.version + " · " + e.eventType + " · " + JSON.stringify(e.payload));
    var list = $("tail");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 200) list.removeChild(list.lastChild);
  }

  var feed = null; // the WebSocket of the `events` subscription

  function hasEventsSubscription() {
    return gql("{ __type(name: \"Subscription\") { fields { name } } }").then(function (d) {
      return !!(d.__type && d.__type.fields.some(function (f) { return f.name === "events"; }));
    }).catch(function () { return false; });
  }

  function subscribeToLog() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/graphql/ws", "graphql-transport-ws");
    feed = ws;
    ws.onopen = function () {
      ws.send(JSON.stringify({ type: "connection_init", payload: token() ? { Authorization: "Bearer " + token() } : {} }));
    };
    ws.onmessage = function (m) {
      var msg = JSON.parse(m.data);
      if (msg.type === "connection_ack") {
        ws.send(JSON.stringify({ id: "tail", type: "subscribe", payload: { query: "subscription { events { position streamType streamId version eventType payload } }" } }));
      } else if (msg.type === "next" && msg.payload.data) {
        tailLine(msg.payload.data.events);
      } else if (msg.type === "ping") {
        ws.send(JSON.stringify({ type: "pong" }));
      } else if (msg.type === "error") {
        say("live tail: " + JSON.stringify(msg.payload));
      }
    };
    ws.onclose = function (c) { if (feed === ws) $("tail-mode").textContent = "Live tail closed (" + c.code + " " + c.reason + ")."; };
  }

  function pollStream() {
    if (!current) return;
    var stream = current;
    gql(EVENTS, { t: stream.type, id: stream.id, after: String(stream.version) }).then(function (d) {
      if (stream !== current) return;
      d.streamEvents.edges.forEach(function (edge) {
        var e = edge.node;
        e.streamType = stream.type; e.streamId = stream.id;
        $("events").tBodies[0].appendChild(eventRow(e));
        tailLine(e);
        stream.version = e.version;
      });
    }).catch(fail);
  }

  function startTail() {
    if (feed) return;
    if (!current) { $("tail-mode").textContent = "Open a stream to follow it."; return; }
    $("tail-mode").textContent = "Following " + current.type + " " + current.id + " (polling every second).";
    tailTimer = setInterval(pollStream, 1000);
  }

  function stopTail() { if (tailTimer) clearInterval(tailTimer); tailTimer = null; }

  // Projections with their dead letters, retry and rebuild.
  function loadProjections() {
    var q = "{ projections { name status position lag lagCap lastError deadLetterCount partitions { partition position } deadLetters(first: 20) { position streamType streamId eventType error attempts } } }";
    return gql(q).then(function (d) {
      var box = $("projections");
      box.replaceChildren();
      var table = el("table", null, { id: "projection-table" });
      var head = row(["Projection", "Status", "Checkpoint", "Lag", "Dead letters", "Actions"]);
      head.querySelectorAll("td").forEach(function (td) { var th = el("th", td.textContent, { scope: "col" }); td.replaceWith(th); });
      table.appendChild(head);
      d.projections.forEach(function (p) {
        var actions = document.createElement("div");
        var retry = button("Retry dead letters", function () { retryDeadLetters(p.name); });
        retry.setAttribute("data-retry", p.name);
        retry.disabled = p.deadLetterCount === 0;
        var rebuild = button("Rebuild", function () { rebuildProjection(p.name); });
        rebuild.setAttribute("data-rebuild", p.name);
        var progress = el("span", "", { id: "rebuild-" + p.name });
        actions.append(retry, " ", rebuild, " ", progress);
        var letters = document.createElement("div");
        letters.textContent = String(p.deadLetterCount);
        if (p.deadLetters.length) {
          var list = el("ul", null, { "data-dead-letters": p.name });
          p.deadLetters.forEach(function (l) {
            list.appendChild(el("li", "#" + l.position + " " + l.streamType + " " + l.streamId + " " + l.eventType + " (" + l.attempts + " attempts): " + l.error));
          });
          letters.appendChild(list);
        }
        var checkpoint = document.createElement("div");
        checkpoint.textContent = p.position;
        if (p.partitions.length > 1) {
          var parts = el("ul", null, { "data-partitions": p.name });
          p.partitions.forEach(function (c) { parts.appendChild(el("li", "partition " + c.partition + ": " + c.position)); });
          checkpoint.appendChild(parts);
        }
        var lag = p.lag >= p.lagCap ? "≥ " + p.lagCap : String(p.lag);
        var status = p.status + (p.lastError ? " — " + p.lastError : "");
        table.appendChild(row([p.name, status, checkpoint, lag, letters, actions]));
      });
      box.appendChild(table);
    });
  }

  function retryDeadLetters(name) {
    gql("mutation($p: String!) { retryDeadLetters(projection: $p) { applied failed waiting } }", { p: name }).then(function (d) {
      var r = d.retryDeadLetters;
      say(name + ": " + r.applied + " applied, " + r.failed + " still failing, " + r.waiting + " waiting");
      return loadProjections();
    }).catch(fail);
  }

  function rebuildProjection(name) {
    gql("mutation($n: String!) { rebuildProjection(name: $n) { phase } }", { n: name }).then(function () {
      var timer = setInterval(function () {
        gql("query($n: String!) { rebuildStatus(name: $n) { phase applied total error } }", { n: name }).then(function (d) {
          var s = d.rebuildStatus, span = $("rebuild-" + name);
          if (!s || !span) return;
          span.replaceChildren();
          var bar = el("progress", null, { max: String(Math.max(s.total, 1)), value: String(s.applied), "aria-label": "Rebuild of " + name });
          span.append(bar, " " + s.phase + " " + s.applied + "/" + s.total + (s.error ? " " + s.error : ""));
          if (s.phase !== "RUNNING") { clearInterval(timer); }
        }).catch(function (e) { clearInterval(timer); fail(e); });
      }, 500);
    }).catch(fail);
  }

  function refreshAll() {
    say("");
    return Promise.all([loadTypes(), loadProjections()]).catch(fail);
  }

  $("token").value = token();
  $("token-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    if (feed) { var old = feed; feed = null; old.close(); }
    boot();
  });
  $("find-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var id = $("find-id").value.trim();
    if (id) listStreams({ streamId: id });
  });
  $("state-form").addEventListener("submit", foldState);
  $("refresh-types").addEventListener("click", function () { loadTypes().catch(fail); });
  $("refresh-projections").addEventListener("click", function () { loadProjections().catch(fail); });

  function boot() {
    refreshAll();
    hasEventsSubscription().then(function (yes) {
      if (yes) {
        stopTail();
        $("tail-mode").textContent = "Following the whole event log (events subscription).";
        subscribeToLog();
      } else {
        startTail();
      }
    });
  }
  boot();
})();
