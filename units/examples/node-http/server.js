// A plain node http server: it binds its own address and knows nothing of
// fdsup. Under fdsupd with wrap = "preload" the bind gets fdsupd's listener.
'use strict';
const http = require('http');

const server = http.createServer((request, response) => {
  const body = JSON.stringify({ pid: process.pid }) + '\n';
  response.writeHead(200, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  response.end(body);
});
server.listen(8080, '127.0.0.1');
