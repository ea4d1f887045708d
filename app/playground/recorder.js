// Microphone capture with the Web Audio API: raw PCM from an AudioWorklet, then resampled to
// the model's sample rate and written as a WAV file (wav.js). MediaRecorder would give WebM/Opus, which the
// server does not decode.

import { DEFAULT_RATE, encodeWav, resample } from "./wav.js";

export const MAX_SECONDS = 10;

export class Recorder {
  /**
   * @param {(seconds: number) => void} onProgress  called as audio arrives
   * @param {() => void} onLimit  called once MAX_SECONDS are captured (the caller then stops)
   */
  constructor(onProgress, onLimit) {
    this.onProgress = onProgress;
    this.onLimit = onLimit;
    this.chunks = [];
    this.samples = 0;
    this.ctx = null;
    this.stream = null;
  }

  get recording() {
    return this.ctx !== null;
  }

  /** Ask for the microphone and start capturing; throws a readable Error when it cannot. */
  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error(
        "this page cannot use a microphone here: browsers allow it only on https:// or http://127.0.0.1 / localhost",
      );
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      throw new Error(`no microphone: ${err.message || err.name}`);
    }
    const ctx = new AudioContext();
    this.ctx = ctx;
    await this.ctx.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
    const source = this.ctx.createMediaStreamSource(this.stream);
    const node = new AudioWorkletNode(this.ctx, "pcm-capture");
    const mute = this.ctx.createGain();
    mute.gain.value = 0; // pulled by the destination (so it runs), but silent
    source.connect(node).connect(mute).connect(this.ctx.destination);
    this.chunks = [];
    this.samples = 0;
    const rate = this.ctx.sampleRate;
    node.port.onmessage = (e) => {
      if (this.ctx !== ctx) return; // stopped: late blocks are dropped
      this.chunks.push(e.data);
      this.samples += e.data.length;
      this.onProgress(this.samples / rate);
      if (this.samples >= MAX_SECONDS * rate && this.samples - e.data.length < MAX_SECONDS * rate) this.onLimit();
    };
  }

  /**
   * Stop and return the clip, resampled to `toRate` (the model's sample rate).
   * @param {number} [toRate]
   * @returns {Promise<{blob: Blob, seconds: number, rate: number}>}
   */
  async stop(toRate = DEFAULT_RATE) {
    if (!this.ctx) throw new Error("not recording");
    const ctx = this.ctx;
    this.ctx = null;
    this.stream.getTracks().forEach((t) => t.stop());
    const rate = ctx.sampleRate;
    await ctx.close();
    const pcm = new Float32Array(this.samples);
    let at = 0;
    for (const chunk of this.chunks) {
      pcm.set(chunk.subarray(0, Math.min(chunk.length, pcm.length - at)), at);
      at += chunk.length;
    }
    this.chunks = [];
    const samples = await resample(pcm, rate, toRate);
    return { blob: encodeWav(samples, toRate), seconds: samples.length / toRate, rate: toRate };
  }
}
