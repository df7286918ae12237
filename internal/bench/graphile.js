// Drains n no-op jobs through graphile-worker with a local queue and batched
// completion; run by internal/bench/graphile.go with the package installed next to it.
// Prints {"secs": …} measured from the first addJobs until the runner stopped (its
// stop flushes the batched completions).
const { run, makeWorkerUtils, Logger } = require("graphile-worker");

const [schema, nArg, concurrencyArg] = process.argv.slice(2);
const n = Number(nArg);
const concurrency = Number(concurrencyArg || 10);
const connectionString = process.env.DATABASE_URL;
const logger = new Logger(() => () => {});

(async () => {
  const preset = {
    worker: {
      connectionString,
      schema,
      concurrentJobs: concurrency,
      maxPoolSize: concurrency + 2,
      pollInterval: 1000,
      localQueue: { size: 1000 },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    },
  };
  const utils = await makeWorkerUtils({ connectionString, schema, logger });
  await utils.migrate();
  let done = 0;
  let finish;
  const allDone = new Promise((resolve) => (finish = resolve));
  const taskList = {
    noop: async () => {
      done++;
      if (done === n) finish();
    },
  };
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i += 1000) {
    const specs = [];
    for (let k = i; k < Math.min(n, i + 1000); k++) specs.push({ identifier: "noop", payload: { i: k } });
    await utils.addJobs(specs);
  }
  const runner = await run({ preset, taskList, logger, noHandleSignals: true });
  await allDone;
  await runner.stop();
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  await utils.release();
  process.stdout.write(JSON.stringify({ secs, done }) + "\n");
})().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
