// One table for every event type, like the listener's `events` (SPEC §2): the type, where the log
// is, and the decoded arguments as JSON.
import { onchainTable } from "ponder";

export const events = onchainTable("events", (t) => ({
  id: t.text().primaryKey(),
  type: t.text().notNull(),
  blockNumber: t.bigint().notNull(),
  blockHash: t.hex().notNull(),
  txHash: t.hex().notNull(),
  logIndex: t.integer().notNull(),
  data: t.json().notNull(),
}));
