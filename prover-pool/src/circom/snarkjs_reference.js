// Times snarkjs' Groth16 prover in-process (pcx bench circom's reference).
// node -e <this> <snarkjs package dir> <wasm> <zkey> <input.json> <reps>
const [snarkjsDir, wasm, zkey, inputPath, repsText] = process.argv.slice(1);
const snarkjs = require(snarkjsDir);
const input = JSON.parse(require("fs").readFileSync(inputPath, "utf8"));
const reps = Number(repsText || "3");
(async () => {
  const wtns = { type: "mem" };
  await snarkjs.wtns.calculate(input, wasm, wtns);
  await snarkjs.groth16.prove(zkey, wtns); // warm-up: curve, workers
  const times = { witness_ms: [], prove_ms: [], fullprove_ms: [] };
  for (let i = 0; i < reps; i++) {
    let t = performance.now();
    const w = { type: "mem" };
    await snarkjs.wtns.calculate(input, wasm, w);
    times.witness_ms.push(performance.now() - t);
    t = performance.now();
    await snarkjs.groth16.prove(zkey, w);
    times.prove_ms.push(performance.now() - t);
    t = performance.now();
    await snarkjs.groth16.fullProve(input, wasm, zkey);
    times.fullprove_ms.push(performance.now() - t);
  }
  const median = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
  console.log(JSON.stringify({ witness_ms: median(times.witness_ms), prove_ms: median(times.prove_ms), fullprove_ms: median(times.fullprove_ms) }));
  process.exit(0);
})().catch((e) => { console.error(String(e)); process.exit(1); });
