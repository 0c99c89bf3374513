// Hocuspocus server for the Debrief benchmark: @hocuspocus/server with
// @hocuspocus/extension-sqlite, everything else at Hocuspocus' defaults (store debounce
// 2 s, max debounce 10 s, unload when the last connection leaves) — what its users get.
//
//   node hocuspocus-server.mjs --host 127.0.0.1 --port 0 --db /path/to/data/hocuspocus.sqlite
//
// Port 0 picks a free port. Prints "hocuspocus listening on HOST:PORT" once listening.
// SIGTERM / SIGINT: Hocuspocus' own handler closes the connections, stores every document
// with pending changes and exits 0.

import { Server } from "@hocuspocus/server";
import { SQLite } from "@hocuspocus/extension-sqlite";

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i === -1 || i + 1 >= process.argv.length) {
    if (fallback === undefined) {
      console.error(`missing --${name}`);
      process.exit(2);
    }
    return fallback;
  }
  return process.argv[i + 1];
}

const host = option("host", "127.0.0.1");
const port = Number(option("port", "0"));
const database = option("db");

const server = new Server({
  address: host,
  port,
  quiet: true,
  extensions: [new SQLite({ database })],
});

await server.listen();
console.log(`hocuspocus listening on ${host}:${server.address.port}`);
