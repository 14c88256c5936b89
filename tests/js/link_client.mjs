// A JavaScript client written against the API reference: connect (with a token when given), create, start, wait for the link,
// ping, receive pong as message_received, delete. Prints one JSON line with what it saw.
import { io } from "socket.io-client";

const [url, name, token] = process.argv.slice(2);
const socket = io(url, { transports: ["websocket"], ...(token ? { auth: { token } } : {}) });
const seen = { connected: null, received: [], statusChanged: [] };
socket.on("connected", (data) => { seen.connected = data; });
socket.on("status_changed", (data) => seen.statusChanged.push(data));
socket.on("message_received", (data) => seen.received.push(data));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fail = (why) => { console.log(JSON.stringify({ ok: false, why, seen })); process.exit(1); };
setTimeout(() => fail("timed out"), 60000);
socket.on("connect_error", (err) => fail(err.message));

socket.on("connect", async () => {
  const created = await socket.emitWithAck("create_container", { image: "flow:latest", name });
  if (created.error) fail(created);
  const id = created.container_id;
  const started = await socket.emitWithAck("start_container", { container_id: id });
  if (started.status !== "running") fail(started);
  let status;
  for (let i = 0; i < 300; i++) {
    status = await socket.emitWithAck("get_container_status", { container_id: id });
    if (status.socket_connected) break;
    await sleep(50);
  }
  if (!status.socket_connected) fail("link never connected");
  const sent = await socket.emitWithAck("send_message", { container_id: id, message: { command: "ping" } });
  if (sent.status !== "sent") fail(sent);
  for (let i = 0; i < 100 && !seen.received.some((m) => m.message.command === "pong"); i++) await sleep(50);
  const bad = await socket.emitWithAck("start_container", {});
  const deleted = await socket.emitWithAck("delete_container", { container_id: id });
  console.log(JSON.stringify({ ok: true, created, sent, status, bad, deleted, seen }));
  socket.close();
  process.exit(0);
});
