// Node's BullMQ and bull-board against errand's queues (tests/e2e/test_interop.py).
//
//   node interop.js read  <redisUrl> <prefixes> <jobId>...   Queue.getJobCounts() per queue and getJob(id)
//   node interop.js work  <redisUrl> <prefixes> <queue>      a Node Worker processes one job, then exits
//   node interop.js board <redisUrl> <prefixes> <active>     bull-board's GET /api/queues, via express
//
// <prefixes> is the comma-separated prefix of each partition (partition 0 first): each
// partition of an errand queue is an ordinary BullMQ queue under its own prefix. Counts
// are summed over partitions; bull-board shows partition p of `notifications` as
// `p:notifications` (partition 0 keeps the bare name).
//
// Each prints one JSON object on stdout and exits 0, or prints {"error": ...} and exits 1.
"use strict";

const http = require("http");
const { Queue, Worker } = require("bullmq");

const QUEUES = ["reports", "notifications", "webhooks"];
const WORK_TIMEOUT_MS = 20000;

function connection(redisUrl) {
  const url = new URL(redisUrl);
  return {
    host: url.hostname,
    port: Number(url.port || 6379),
    db: Number(url.pathname.slice(1) || 0),
    maxRetriesPerRequest: null,
  };
}

// [{label, queue}] for every queue and partition; label "p:name" (bare name for p = 0).
function queuesOf(redisUrl, prefixes) {
  return prefixes.split(",").flatMap((prefix, p) =>
    QUEUES.map((name) => ({
      label: p ? `${p}:` : "",
      queue: new Queue(name, { connection: connection(redisUrl), prefix }),
    })),
  );
}

async function closeAll(queues) {
  await Promise.all(queues.map(({ queue }) => queue.close()));
}

async function read(redisUrl, prefixes, jobIds) {
  const queues = queuesOf(redisUrl, prefixes);
  try {
    const counts = {};
    for (const { queue } of queues) {
      const mine = await queue.getJobCounts();
      const sum = counts[queue.name] || {};
      for (const [state, n] of Object.entries(mine)) sum[state] = (sum[state] || 0) + n;
      counts[queue.name] = sum;
    }
    const jobs = {};
    for (const id of jobIds) {
      for (const { queue } of queues) {
        const job = await queue.getJob(id);
        if (!job) continue;
        jobs[id] = {
          queue: queue.name, name: job.name, data: job.data, attemptsMade: job.attemptsMade,
          state: await job.getState(), priority: job.opts.priority || 0,
          failedReason: job.failedReason || null,
        };
      }
    }
    return { counts, jobs };
  } finally {
    await closeAll(queues);
  }
}

async function work(redisUrl, prefixes, queueName) {
  let resolveDone;
  const done = new Promise((resolve) => { resolveDone = resolve; });
  // one Worker per partition; the first job any of them finishes ends the run
  const workers = prefixes.split(",").map((prefix) => {
    const worker = new Worker(queueName, async (job) => {
      await job.updateProgress(50);
      return { processedBy: "node-bullmq", echo: job.data };
    }, { connection: connection(redisUrl), prefix, autorun: false });
    worker.on("completed", (job, result) => resolveDone({ jobId: job.id, name: job.name, data: job.data, result }));
    worker.on("failed", (job, err) => resolveDone({ jobId: job && job.id, error: String(err) }));
    worker.run();
    return worker;
  });
  const timer = setTimeout(() => resolveDone({ error: "no job within the timeout" }), WORK_TIMEOUT_MS);
  try {
    return await done;
  } finally {
    clearTimeout(timer);
    // Closing 16 workers at once can close a connection that is still starting up; bullmq
    // then emits "Connection is closed." where nothing listens. The result is in by then.
    process.on("uncaughtException", (err) => {
      if (!/Connection is closed/.test(String(err && err.message))) throw err;
    });
    await Promise.all(workers.map((w) => w.close()));
  }
}

function getJson(port, path) {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => { body += chunk; });
      res.on("end", () => {
        try { resolve({ status: res.statusCode, body: JSON.parse(body) }); } catch (err) { reject(err); }
      });
    }).on("error", reject);
  });
}

async function board(redisUrl, prefixes, active) {
  const express = require("express");
  const { createBullBoard } = require("@bull-board/api");
  const { BullMQAdapter } = require("@bull-board/api/bullMQAdapter");
  const { ExpressAdapter } = require("@bull-board/express");

  const queues = queuesOf(redisUrl, prefixes);
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath("/board");
  createBullBoard({
    queues: queues.map(({ label, queue }) => new BullMQAdapter(queue, { readOnlyMode: true, prefix: label })),
    serverAdapter,
  });
  const app = express();
  app.use("/board", serverAdapter.getRouter());
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  try {
    const { port } = server.address();
    const path = `/board/api/queues?activeQueue=${encodeURIComponent(active)}&status=failed`;
    const reply = await getJson(port, path);
    return { status: reply.status, queues: reply.body.queues };
  } finally {
    await new Promise((resolve) => server.close(resolve));
    await closeAll(queues);
  }
}

async function main() {
  const [mode, redisUrl, prefixes, ...rest] = process.argv.slice(2);
  if (mode === "read") return read(redisUrl, prefixes, rest);
  if (mode === "work") return work(redisUrl, prefixes, rest[0]);
  if (mode === "board") return board(redisUrl, prefixes, rest[0]);
  throw new Error(`unknown mode ${mode}`);
}

main().then(
  (result) => {
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exit(result && result.error ? 1 : 0);
  },
  (err) => {
    process.stdout.write(JSON.stringify({ error: String(err && err.stack ? err.stack : err) }) + "\n");
    process.exit(1);
  },
);
