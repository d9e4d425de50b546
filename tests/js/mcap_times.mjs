// Prints, for each MCAP file named on the command line, what Foxglove's own reader (@mcap/core) sees:
// {"<file>": {"start": "<ns>", "end": "<ns>", "messages": [[topic, log_time, publish_time, sequence], ...]}}
// Times are decimal strings (bigint ns). CRCs are validated. Used by tests/test_mcap_times.py.
import { open } from "node:fs/promises";
import { McapIndexedReader } from "@mcap/core";

const out = {};
for (const path of process.argv.slice(2)) {
  const fh = await open(path, "r");
  const readable = {
    size: async () => BigInt((await fh.stat()).size),
    read: async (offset, size) => {
      const buf = new Uint8Array(Number(size));
      await fh.read(buf, 0, Number(size), Number(offset));
      return buf;
    },
  };
  const reader = await McapIndexedReader.Initialize({ readable });
  const topics = new Map([...reader.channelsById.values()].map((c) => [c.id, c.topic]));
  const messages = [];
  for await (const m of reader.readMessages({ validateCrcs: true })) {
    messages.push([topics.get(m.channelId), m.logTime.toString(), m.publishTime.toString(), m.sequence]);
  }
  const stats = reader.statistics;
  out[path] = {
    start: stats ? stats.messageStartTime.toString() : null,
    end: stats ? stats.messageEndTime.toString() : null,
    messages,
  };
  await fh.close();
}
process.stdout.write(JSON.stringify(out));
