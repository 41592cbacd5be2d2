// Receives a pack (core/viewing/viewer_volume.py: uint32 header length, header JSON, zlib body) and keeps its
// voxels for slice_viewer.js, which may be waiting for it. Draws nothing.

const shared = (globalThis.__liversegViewer ??= { packs: {}, waiting: {}, state: null, jump: null, ct: null });
const KEPT = 4; // packs kept: the current CT and labels, and the ones arriving for the next result

function decode(bytes, header) {
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  const stream = new Blob([bytes.subarray(4 + length)]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Response(stream).arrayBuffer().then((buffer) => ({
    header,
    voxels: header.kind === "ct" ? new Int16Array(buffer) : new Uint8Array(buffer),
  }));
}

export default function ({ data }) {
  if (!data?.byteLength) return;
  const length = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(data.subarray(4, 4 + length)));
  if (shared.packs[header.id]) return; // the same pack drawn again: decoded already
  const decoded = decode(data, header);
  shared.packs[header.id] = decoded;
  shared.waiting[header.id]?.resolve(decoded);
  delete shared.waiting[header.id];
  const ids = Object.keys(shared.packs);
  for (const old of ids.slice(0, -KEPT)) delete shared.packs[old];
}
