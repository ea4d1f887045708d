// Mono 16-bit PCM WAV at the model's sample rate, made in the browser: the server reads WAV with
// soundfile, so the page needs no server-side WebM/Opus decoding. Resampling uses the browser's
// own resampler (an OfflineAudioContext rendering at the target rate).

/** The rate when the model's card has no spec (a server older than input specs): the digits'. */
export const DEFAULT_RATE = 16000;

/**
 * Resample mono samples to `toRate`.
 * @param {Float32Array} samples
 * @param {number} fromRate
 * @param {number} [toRate]
 * @returns {Promise<Float32Array>}
 */
export async function resample(samples, fromRate, toRate = DEFAULT_RATE) {
  if (fromRate === toRate || samples.length === 0) return samples;
  const length = Math.max(1, Math.round((samples.length * toRate) / fromRate));
  const ctx = new OfflineAudioContext(1, length, toRate);
  const buffer = ctx.createBuffer(1, samples.length, fromRate);
  buffer.copyToChannel(samples, 0);
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(ctx.destination);
  source.start();
  return (await ctx.startRendering()).getChannelData(0);
}

/**
 * A WAV file (RIFF, PCM format 1, one channel, 16 bits) of samples in [-1, 1] (clipped).
 * @param {Float32Array} samples
 * @param {number} [rate]
 * @returns {Blob}
 */
export function encodeWav(samples, rate = DEFAULT_RATE) {
  const dataBytes = samples.length * 2;
  const view = new DataView(new ArrayBuffer(44 + dataBytes));
  const ascii = (offset, text) => [...text].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  ascii(0, "RIFF");
  view.setUint32(4, 36 + dataBytes, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  view.setUint32(40, dataBytes, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}
