// Ponder on the listener benchmark's backlog (bench/peer_ponder/run.py sets the environment).
// BENCH_CONTRACTS: the contracts_config.json of the backlog chain ({name: {address, abi}}),
// BENCH_RPC_URL: anvil or the latency proxy, BENCH_START_BLOCK: the backlog's first block,
// DATABASE_URL: a fresh PostgreSQL database.
import { readFileSync } from "node:fs";
import { createConfig } from "ponder";

type Contract = { address: `0x${string}`; abi: readonly unknown[] };

const contracts: Record<string, Contract> = JSON.parse(readFileSync(process.env.BENCH_CONTRACTS!, "utf8"));
const startBlock = Number(process.env.BENCH_START_BLOCK);

export default createConfig({
  database: { kind: "postgres", connectionString: process.env.DATABASE_URL },
  chains: {
    anvil: { id: 31337, rpc: process.env.BENCH_RPC_URL!, disableCache: true },
  },
  contracts: Object.fromEntries(
    Object.entries(contracts).map(([name, c]) => [
      name,
      { chain: "anvil" as const, abi: c.abi as any, address: c.address, startBlock },
    ]),
  ) as any,
});
