import { describe, expect, it } from "vitest";
import { handOver, releaseHandedOver, releaseWhole } from "../../src/runtime/buffers.js";

const AGE_CHUNK = 64 * 1024;

describe("releaseWhole", () => {
  it("frees a buffer that is its whole ArrayBuffer, including one of exactly the age chunk size", () => {
    // node 24's Buffer.poolSize is 64 KiB too: a size test against it once kept these from ever being freed.
    for (const size of [AGE_CHUNK, AGE_CHUNK + 1, 1 << 20]) {
      const buffer = Buffer.allocUnsafeSlow(size);
      releaseWhole(buffer);
      expect(buffer.byteLength, `size ${size}`).toBe(0);
    }
  });

  it("leaves a view of part of a buffer alone, as it leaves slices of node's shared pool", () => {
    const whole = Buffer.alloc(AGE_CHUNK * 2);
    const part = whole.subarray(0, AGE_CHUNK);
    releaseWhole(part);
    expect(part.byteLength).toBe(AGE_CHUNK);
    const pooled = Buffer.from("shared pool slice");
    releaseWhole(pooled);
    expect(pooled.toString()).toBe("shared pool slice");
  });
});

describe("handOver and releaseHandedOver", () => {
  it("free a handed-over chunk's whole ArrayBuffer, also when the chunk views only its start", () => {
    const batch = Buffer.allocUnsafeSlow(1 << 20);
    const chunk = batch.subarray(0, 1000);
    handOver(chunk);
    releaseHandedOver(chunk);
    expect(batch.byteLength).toBe(0);
    const exact = Buffer.allocUnsafeSlow(AGE_CHUNK);
    handOver(exact);
    releaseHandedOver(exact);
    expect(exact.byteLength).toBe(0);
  });

  it("never mark what may be a slice of the shared pool, nor free what was not handed over", () => {
    const poolLike = new Uint8Array(new ArrayBuffer(Buffer.poolSize), 0, 100);
    handOver(poolLike);
    releaseHandedOver(poolLike);
    expect(poolLike.byteLength).toBe(100);
    const kept = Buffer.allocUnsafeSlow(AGE_CHUNK);
    releaseHandedOver(kept);
    expect(kept.byteLength).toBe(AGE_CHUNK);
  });
});
