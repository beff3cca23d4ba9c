// An insert-only handler per event type of the three contracts (registered from their ABIs).
import { readFileSync } from "node:fs";
import { ponder } from "ponder:registry";
import { events } from "ponder:schema";

type Contract = { abi: { type: string; name?: string }[] };

const contracts: Record<string, Contract> = JSON.parse(readFileSync(process.env.BENCH_CONTRACTS!, "utf8"));

// uint256 arguments as decimal strings, bytes as hex: what the listener stores too.
const plain = (args: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(args).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v]));

for (const [name, contract] of Object.entries(contracts)) {
  for (const item of contract.abi) {
    if (item.type !== "event" || !item.name) continue;
    const type = item.name;
    (ponder.on as any)(`${name}:${type}`, async ({ event, context }: any) => {
      await context.db.insert(events).values({
        id: event.id,
        type,
        blockNumber: event.block.number,
        blockHash: event.block.hash,
        txHash: event.transaction.hash,
        logIndex: event.log.logIndex,
        data: plain(event.args),
      });
    });
  }
}
