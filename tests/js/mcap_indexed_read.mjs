// Read MCAP files the way Foxglove does: @mcap/core's McapIndexedReader (summary, chunk indexes, message
// indexes), CRCs validated. Prints one JSON object per file: {"path", "topics": {topic: [sequence, ...]}}
// or {"path", "error"}. Used by tests/test_store_*.py (node + `npm ci` in tests/js, see .ci/run).
// API: @mcap/core 2.2.2 dist/esm/McapIndexedReader.d.ts (Initialize({readable}), readMessages({validateCrcs}));
// @mcap/nodejs 1.0.2 FileHandleReadable.
import { open } from "node:fs/promises";
import { McapIndexedReader } from "@mcap/core";
import { FileHandleReadable } from "@mcap/nodejs";

for (const path of process.argv.slice(2)) {
  const handle = await open(path, "r");
  try {
    const reader = await McapIndexedReader.Initialize({ readable: new FileHandleReadable(handle) });
    const topics = {};
    for await (const msg of reader.readMessages({ validateCrcs: true })) {
      const topic = reader.channelsById.get(msg.channelId).topic;
      (topics[topic] ??= []).push(msg.sequence);
    }
    console.log(JSON.stringify({ path, topics }));
  } catch (err) {
    console.log(JSON.stringify({ path, error: String(err) }));
  } finally {
    await handle.close();
  }
}
