"""Low-bit weight × float activation products at small batch (refimpl.kernels.lowbit_gemv) vs
float32 BLAS, float32 ``torch.mm`` and torch's int8 dynamic-quantised ``Linear``.

Issue #19, item 1: for 2-, 3- and 4-bit codebook weights, ternary and binary weights, a 4096 ×
4096 weight matrix and batch 1 and 8, the packed product should be ≥ 3× float32 BLAS (``X @
W.T``, BLAS at its best: the faster of NumPy's BLAS and ``torch.mm``); at batch 64 no slower
than float32. The ratio to torch's int8 dynamic ``Linear`` (``quantize_dynamic``, fbgemm) is
the moonshot. All peers and kernels run in the same process on the same activations, timed
interleaved (one call each per round, 0.3 s idle before each call so no library's spinning
threads steal the other's core); medians and best of the rounds are reported, the ratios use
medians (``best/best`` is printed too).

Run the headline as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_lowbit.py --quick

Kernels timed: ``kbit_gemv`` at 4, 3, 2 bits (random codes, a 2^k-entry float32 codebook and a
float32 scale per row — the same cost as k-means or uniform codes), ``binary_weight_gemv``
(one sign plane + α per row), ``ternary_weight_gemv`` (two planes + α per row), and, for the
record, the previous ``kbit_matmul`` path (decode 256-row blocks to float, BLAS per block) at
4 bits. ``kbit_matmul`` itself now dispatches float32 batches ≤ 64 to ``kbit_gemv``.

Options: ``--one-thread`` (every library on one thread) and ``--cpu-time`` (with it: time each
call by the process's CPU seconds, ``time.process_time``, which does not count the time the
scheduler gave to other jobs — the steadiest figure on a shared machine; memory stalls still
count), ``--old-path`` (also the old decode-then-BLAS ``kbit_matmul``, 0.05–1.5 s per call),
``--quick`` (7 rounds), ``--repeat R`` (R rounds), ``--json``.

Machine and protocol
--------------------
2 vCPUs "AMD EPYC" family 25 model 17 (Zen 4, LLVM ``znver4``; AVX-512 F/BW/VL/VBMI/VNNI/BF16,
512-bit ops on 256-bit units), 1 MiB L2 per core, 32 MiB L3; NumPy's OpenBLAS 0.3.31 with its
SkylakeX kernel (threadpoolctl; ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` unset), torch 2.13
CPU, numba 0.68.1 (workqueue threading layer). 4096 × 4096 weights, float32 activations,
random codes with a sorted random float32 codebook and a float32 scale per row. Every result is
first checked against the float64 product within the float32 rounding bound.

THE MACHINE WAS SHARED: every run below had a load average of 12–15 on 2 cores (other
sessions' test suites and notebooks). A 2-thread call then waits for its slower thread, so wall
times are inflated up to ~30× (float32 BLAS at batch 8: 71–314 ms against ~9 ms quiet) and the
medians mostly measure the scheduler. Treat the figures as provisional until re-run quiet.

Run C, 2026-12-06 21:33 UTC, ``--repeat 11`` (2 threads each, wall time, medians / best of 11
interleaved rounds; "x f32" = faster float32 peer's median / row median; "b/b" = best float32
call of either peer / the row's best call; load 7.2–7.9):

  =====  ===========  ===========  =========  =========  =========  =========  ==========
  batch  numpy f32    torch f32    int8       4-bit      3-bit      2-bit      binary
  =====  ===========  ===========  =========  =========  =========  =========  ==========
  1      22.5 / 2.26  8.02 / 3.44  8.94/4.20  1.68/1.21  1.41/1.23  1.15/1.04  1.13/0.94
  x f32                            0.90       4.78       5.70       6.96       7.08
  b/b                                         1.87       1.84       2.17       2.40
  8      87.0 / 54.9  72.0 / 28.8  86.6/39.6  4.23/3.25  4.02/3.26  3.74/3.12  8.21/1.79
  x f32                            0.83       17.0       17.9       19.3       8.78
  64     196 / 79.3   122 / 84.1   124/89.8   56.3/40.3  40.9/29.1  42.0/27.0  41.8/28.8
  x f32                            0.98       2.16       2.98       2.90       2.92
  =====  ===========  ===========  =========  =========  =========  =========  ==========

  ternary: 1.61 / 1.23 ms (x f32 4.97), 12.0 / 3.61 ms (6.00), 52.3 / 37.6 ms (2.33).

Run D, 21:29 UTC, ``--one-thread --cpu-time --repeat 9`` (CPU ms per call, medians / best of 9;
load 11.6 → 7.9):

  =====  ===========  ===========  =========  =========  =========  =========  ==========
  batch  numpy f32    torch f32    int8       4-bit      3-bit      2-bit      binary
  =====  ===========  ===========  =========  =========  =========  =========  ==========
  1      3.32 / 3.12  3.99 / 3.45  4.08/3.61  1.44/1.21  1.35/1.24  1.21/1.14  1.08/1.00
  x f32                            0.81       2.30       2.46       2.73       3.07
  8      19.6 / 16.5  10.7 / 9.21  14.0/11.4  3.65/3.30  3.36/3.17  3.86/3.28  3.89/3.09
  x f32                            0.77       2.94       3.19       2.78       2.76
  64     39.1 / 35.1  41.9 / 36.7  45.2/40.3  29.5/24.6  24.9/23.5  26.6/24.0  27.1/23.4
  x f32                            0.87       1.33       1.57       1.47       1.45
  =====  ===========  ===========  =========  =========  =========  =========  ==========

  ternary: 1.35 / 1.15 ms (x f32 2.46), 4.13 / 3.32 (2.60), 28.4 / 25.2 (1.38).

Run E, 21:38 UTC, ``--repeat 15``, 2 threads, wall, load 6.1–8.4 (medians / best, ms): batch 1
numpy f32 16.0 / 1.74, torch f32 3.56 / 3.26, int8 11.8 / 3.63, 4-bit 1.25 / 1.15, 3-bit
1.32 / 1.11, 2-bit 1.07 / 0.97, binary 0.94 / 0.87, ternary 1.16 / 1.11 → x f32 (medians)
2.7–3.8×, best/best 1.5–2.0× (NumPy's best call 1.74 ms ≈ 38 GB/s); batch 8: x f32 4.0–12.4×,
best/best 10.3–11.5× (float32 bests 37–47 ms: loaded); batch 64: 2.1–2.9×, best/best 2.0–3.2×.
The kernel's 2-thread times equal its 1-thread CPU times (~1.0–1.2 ms at batch 1): under this
load its second thread hardly ever got a core.

Before the software prefetch (same protocols, load 12–15, 21:09–21:12 UTC): one thread, CPU
time, batch 1: 4-bit 2.51 / 2.00 ms (1.40×), binary 1.29 / 0.94 (2.72×); batch 8: 2.5–3.7×;
batch 64: 1.2–1.4×.

Before the prefetch, the kernels called directly in a loop (no idle time between calls, so
the packed weights stay in cache; same session, load ~9–14): batch 1, 2 threads, best of 30: 4-bit 0.53 ms, 3-bit 0.47,
2-bit 0.35, binary 0.35, ternary 0.61 (medians 0.4–8 ms); one thread: 4-bit 0.83–1.08 ms, 2-bit
0.73, binary 0.60–0.70; batch 8, one thread: 2.7–4.3 ms. Larger batches, one thread, CPU ms
(4-bit; float32 BLAS; old decode-then-BLAS ``kbit_matmul``): 64: 24 / 34 / 950; 128: 50 / 57 /
910; 256: 98 / 98 / 1150; 512: 197 / 180 / 260 — hence ``kbit_matmul`` uses the packed kernel up
to batch 512 (``lowbit_gemv.SMALL_BATCH``).

CORRECTION (2026-12-07 00:10 UTC): ``quantize_dynamic`` swaps the *children* of the module it
is given, so the bare ``nn.Linear`` passed to it before came back unchanged: every "torch int8"
figure in runs C–E, in the verdict below and in the coordinator's 23:30 quiet run was torch's
**float32** Linear (its outputs matched the float64 product to 1e-4 where int8 is off by ~5).
The peer is now ``quantize_dynamic(nn.Sequential(lin))`` (a ``DynamicQuantizedLinear``,
fbgemm/x86 engine, checked by type at start-up).

Run F, 2026-12-07 00:16 UTC, ``--one-thread --cpu-time --quick`` with the real int8 peer and
the int8 × int8 VNNI kernel (``lowbit_gemv.int8_gemv``: activations quantised per row at each
call, exact int32 sums), AVX-512 path; load 12.2 → 10.6 (CPU ms, medians / best of 7):

  =====  ===========  ===========  =========  =========  =========  =========  =========
  batch  numpy f32    torch int8   4-bit      3-bit      2-bit      binary     int8 VNNI
  =====  ===========  ===========  =========  =========  =========  =========  =========
  1      3.02 / 2.96  1.23 / 1.15  1.40/1.32  1.27/1.13  1.06/0.99  0.93/0.91  1.82/1.64
  x int8                           0.88       0.97       1.16       1.32       0.68
  8      18.6 / 16.1  1.98 / 1.35  4.46/3.32  3.45/3.24  3.98/3.29  3.91/3.17  4.65/3.38
  x int8                           0.44       0.57       0.50       0.51       0.43
  64     36.7 / 34.3  7.05 / 5.98  27.3/22.6  24.3/23.3  24.0/22.7  26.2/22.5  16.7/15.6
  x int8                           0.26       0.29       0.29       0.27       0.42
  =====  ===========  ===========  =========  =========  =========  =========  =========

  (torch f32 3.49 / 3.25, 11.9 / 8.84, 37.0 / 32.5; ternary 1.19 / 1.16, 4.29 / 3.44,
  26.0 / 24.8.) Against float32 (the faster of NumPy and torch, medians): 4/3/2-bit, binary,
  ternary 2.2–3.3× at batch 1, 2.7–3.4× at batch 8, 1.35–1.5× at batch 64; int8 VNNI 1.7×,
  2.6×, 2.2×. Against fbgemm's dynamic int8 Linear the moonshot is NOT met: level or slightly
  ahead at batch 1 for 2-bit and binary (1.16×, 1.32×), behind for 4-bit (0.88×), and 2–4×
  behind from batch 8 on (fbgemm's int8 GEMM is compute-efficient where these kernels decode
  and multiply in float32; the int8 VNNI kernel is not yet blocked over weight rows).

Run G, 00:03 UTC, the AVX2 path forced on this machine (``REFIMPL_LOWBIT_ISA=avx2``, 8-lane
``vpermps``, two permutes + blend for 4-bit), ``--one-thread --cpu-time --quick``, load
12.9–16.7 (best CPU ms; AVX-512 path from the 00:00 run of the same protocol in brackets):
batch 1: 4-bit 1.61 (1.14), 3-bit 1.20 (1.08), 2-bit 1.16 (0.99), binary 0.95 (0.87), ternary
1.26 (1.12), float32 BLAS 2.88 → 1.8–3.0× float32; batch 8: 4.52 (3.45), 3.60 (3.15), 3.47
(3.34), 3.29 (3.27), 3.78 (3.46), float32 8.50 → 1.9–2.6×. The portable loops (what an AVX2
CPU got before): 56 ms at batch 1 and 62 ms at batch 8 for 4-bit (AVX2 1.64 / 4.43, AVX-512
0.78 / 2.93 ms, kernels called back to back, 00:14 UTC, load 13.8).

Verdict against issue #19's targets, on this shared machine (runs C and D):

* batch 64, no slower than float32: MET in both runs (1.3–1.6× on CPU time, 2.2–3.0× wall).
* batch 8, ≥ 3× float32 BLAS: NOT robustly met. One thread, CPU time: 3-bit 3.19×, 4-bit
  2.94×, 2-bit 2.78×, binary 2.76×, ternary 2.60×; the 2-thread wall ratios (6–19×) come from
  a loaded machine hurting 2-thread BLAS far more than the kernel and are not evidence.
* batch 1, ≥ 3× float32 BLAS: NOT robustly met. One thread, CPU time: binary 3.07×, the rest
  2.3–2.7×; 2 threads, wall: 2.7–7.1× on medians (runs C, E) but only 1.5–2.4× best call
  against best call (NumPy's best float32 calls, 1.74–2.26 ms, were lucky undisturbed ones). Between calls the benchmark
  idles 0.3 s, so the packed weights come from DRAM; the kernel is bound by its decode (shift +
  ``vpermps`` + FMA per 16 weights, ~2–3 cycles on this core) plus the memory stream, which the
  software prefetch now partly overlaps.
* why one thread understates the 2-core ratio (an inference, not a measurement): at batch ≤ 8
  float32 BLAS is memory-bound — one thread here 3.1–3.3 ms (batch 1) and 9.2 ms (batch 8),
  the issue's quiet 2-thread figures 2.2–3.8 and 9.0 ms — while the kernel is compute-bound
  (batch 8 on one thread: 8.4 M zmm FMAs in ~3.2 ms, ~0.85 FMA per cycle, near this core's
  one 512-bit FMA per cycle) and should halve its time on two idle cores, i.e. ~5–6× at batch
  8 and ~4–6× at batch 1. That needs a quiet re-run to confirm.
* the torch int8 moonshot: not met. Under this load torch int8 lost its cache advantage (batch
  1: 4.1–8.9 ms here; the issue measured 0.146 ms quiet) and the kernels beat it 2.8–7.9× in
  these runs; against the issue's quiet int8 figures (0.146 / 0.525 / 3.15 ms at batch 1 / 8 /
  64) the kernels' best calls here (~1.0–1.2 ms, ~3.1–3.3 ms, ~23–29 ms) are several times
  slower. Beating fbgemm needs int8 (VNNI) arithmetic on quantised activations, a different
  numerical contract than float activations.

Why batch 1 stopped at ~1.0 ms for every bit width (issue #19 follow-up, 2026-12-07 00:47–01:02
UTC, same machine, numba's ``workqueue`` layer, load 0.5–2.6: another session's tests often
held one core, so 2-thread figures below are upper bounds). Scripts: per-step timestamps of
the public path; an empty ``prange`` stamped with ``llvm.readcyclecounter`` per iteration.

* The kernel is compute-bound, not weight-bound: every width does one shift + ``vpermps`` +
  FMA per 16 weights, so binary does as many lookups per weight as 4-bit. One thread, calls
  back to back: 4-bit 0.73, 2-bit 0.63, binary 0.55 ms (8.4 / 4.2 / 2.1 MB of weights);
  two threads when the other core was free: 4-bit 0.44–0.51, binary 0.33 ms.
* Waking the threads: an empty 2-iteration ``prange`` on ``workqueue`` costs 75 µs back to back
  (both iterations run on woken workers, starting 44 and 54 µs after the call; the calling
  thread only waits) and 120–180 µs after 0.3 s idle. GNU OpenMP: 1.7 µs back to back (not
  fork-safe, see :mod:`refimpl.kernels._backend`); TBB (the ``tbb`` 2023.2.0 wheel, tried via
  ``LD_LIBRARY_PATH`` only, not installed): 2 µs back to back, 91–95 µs after 0.3 s idle.
* The 0.3 s idle of this protocol: the first call after a pause is slow whatever it is (a
  4000-element njit sum: 3.6 µs back to back, 33 µs after 0.3 s, 28 µs after 10 ms), and
  spinning 0.2–3 ms in Python before the call does not remove the kernel's extra time (serial
  4-bit 0.87–0.94 ms vs 0.80 back to back): the weights come back from DRAM, not a slow clock.
* Python steps of the call: before the fix, ``kbit_gemv`` ran the checks, ``_layout_x``, the
  kernel, ``np.all(scale == 1)`` and the scale product as separate steps: 0.06 ms beside the
  kernel back to back but 0.38 ms after 0.3 s idle (first check 0.17 ms, the rest 0.19 ms;
  4-bit, medians of 11). Now layout, product and scale are one compiled call; what remains
  after idle (load ~1): public call − driver = 0.17 ms (4-bit), 0.21 ms (binary).
* With the other core busy the 2-thread driver is slower than the serial one after idle (4-bit
  1.09 vs 0.96 ms, binary 0.78 vs 0.66): the second thread waits for its core.
* TBB against ``workqueue`` (same script, alternated, load 1.2–1.7, medians ms): back to back
  4-bit 0.79–0.80 vs 0.90–0.91, binary 0.58 vs 0.67–0.69, CSR SpMV 4096² 90 % 0.68–0.78 vs
  0.85–0.91; after 0.3 s idle no difference (4-bit 1.29–1.31 vs 1.25–1.39). Not switched:
  installing ``tbb`` changes the layer of every refimpl process (``_backend`` asks for
  "forksafe", which picks TBB when present); it helps a decoding loop, not this protocol.

``--warm`` (new) times the 3rd of 3 back-to-back calls after each pause — a decoding loop's
steady state. Run H, 01:00 UTC, ``--quick --warm``, load 2.5 → 1.3 (medians / best, ms):

  =====  ===========  ===========  =========  =========  =========  =========  =========
  batch  numpy f32    torch int8   4-bit      3-bit      2-bit      binary     ternary
  =====  ===========  ===========  =========  =========  =========  =========  =========
  1      2.26 / 1.90  7.95 / 0.23  1.03/0.69  0.99/0.58  0.74/0.63  0.66/0.52  0.91/0.72
  x f32                            2.19       2.30       3.07       3.44       2.49
  8      9.55 / 7.46  0.66 / 0.45  2.33/1.97  1.97/1.75  1.84/1.54  1.92/1.55  2.07/1.70
  x f32                            3.06       3.62       3.87       3.71       3.44
  64     17.2 / 16.0  2.78 / 2.63  12.2/11.9  12.7/11.8  12.1/11.8  12.0/11.5  15.5/12.5
  x f32                            1.41       1.36       1.42       1.43       1.11
  =====  ===========  ===========  =========  =========  =========  =========  =========

  (torch f32 3.61 / 3.03, 7.12 / 6.63, 18.2 / 15.2; "x f32" against the faster float32 peer's
  median; best/best 2.6–3.7× at batch 1, 3.4–4.3× at batch 8.) Warm, torch's int8 Linear is
  the best peer from batch 8 on (0.66 and 2.78 ms: 3–4× ahead of these kernels). The same
  build under the default protocol (Run H', 00:59 UTC, load 1.9–2.6): batch 1 4-bit 1.37 /
  1.31, binary 1.16 / 0.87 ms against NumPy float32 11.0 / 1.74 and torch float32 5.18 / 3.65
  — ratios of 3.5–4.5× on medians but 1.3–2.0× best against best: the load decides them.

Verdict for batch 1, ≥ 3× float32: still NOT robustly met. Warm, 2- and 1-bit reach 3.1–3.4×
and 4-/3-bit/ternary 2.2–2.5× (medians, loaded machine). What stands between: the decode
(0.55–0.73 ms of one core for 16.7 M weights, the same for every width — the table-on-
activations form would cut the lookups for 1- and 2-bit weights), the thread wake-up
(75–180 µs per call on ``workqueue``) and, in this protocol, the cold start after each pause.

Table lookup on the activations (``refimpl.kernels.lut_gemv``, T-MAC-style; cases "2-bit LUT",
"ternary LUT", "binary LUT", timed on the stored LUT layout — the one-off repack
``lut_pack*`` runs before the timing). Per 16 rows × 4 binary (2 two-bit / ternary) weights one
shift, one ``vpermps`` on a 16-entry table of partial sums and one add. One thread, CPU time,
4096 × 4096, kernels back to back (2026-12-07 02:45 UTC, load ~5; decode kernel in brackets):
batch 1 binary 0.22 (0.62) ms, 2-bit 0.45 (0.68), ternary 0.45 (0.90); batch 8 1.2–1.6 (3.0),
2.4–3.1 (3.2), 2.4–2.8 (3.2); batch 64 11.1 (25.3), 20.6 (25.1), 25.7 (29.1). Both kernels run
at ~2 cycles per 512-bit lookup; the LUT does 4× (2×) fewer lookups at batch ≤ 8. For 3- and
4-bit codes it gives nothing (a 4-bit LUT, one code per lookup: 1.01 vs 1.02 ms at batch 1,
1.5× slower at batch 8), so they keep the decode kernel. At batch 1 the LUT product runs on one
thread (``lut_gemv._SERIAL_LOOKUPS``): after the 0.3 s pause the threaded driver was slower on
this shared machine (2-bit, 15 rounds, load 1.3: serial 0.90 / 0.69 ms, threaded 1.17 / 0.86;
back to back 0.58 / 0.49 vs 0.65 / 0.61).

Run I, 02:57 UTC, ``--quick`` (2 threads, wall, medians / best of 7; load 2.4 → 1.5), printed by
:func:`ratio_table` ("x f32" against torch f32, the faster float32 peer by median):

  =====  =========  =========  =========  =========  =========  =========  ==========  ==========  ==========
  batch  numpy f32  torch f32  torch int8 4-bit      3-bit      2-bit      2-bit LUT   ternary LUT binary LUT
  =====  =========  =========  =========  =========  =========  =========  ==========  ==========  ==========
  1      6.59/5.13  4.12/3.33  6.98/0.98  1.39/1.12  1.28/1.02  1.02/0.93  0.885/0.786 0.845/0.754 0.559/0.483
  x f32                        0.59       2.95       3.22       4.04       4.65        4.87        7.37
  8      25.2/12.2  21/7.04    2.94/1.19  3.92/2.29  3.32/2.41  3.27/2.06  2.96/2.23   2.93/2.09   2.03/1.57
  x f32                        7.15       5.37       6.35       6.44       7.12        7.18        10.36
  64     33/17.5    20.6/16.4  4.08/3.63  16/12.4    14.2/11.9  14.6/13    15.3/10.3   12.1/10.2   6.87/5.80
  x f32                        5.05       1.29       1.45       1.42       1.34        1.71        3.00
  =====  =========  =========  =========  =========  =========  =========  ==========  ==========  ==========

  (binary / ternary decode kernels: 1.04 / 0.88 and 1.42 / 1.21 ms at batch 1.) The float32
  peers never had an undisturbed call here (best 3.33 ms against ~1.74–2.0 ms quiet), so the
  ratios overstate; against a quiet float32 best of 2.0 ms the best LUT calls are binary 4.1×,
  ternary 2.7×, 2-bit 2.5×, and the decode kernel's 4-bit 1.8×, 3-bit 2.0×.

Run J, 03:03 UTC, ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE refimpl bench --quick --json
F lowbit`` (after the fast call path of ``lut_gemv``: float32 arguments checked in the compiled
driver; load 1.7 → 1.3; medians / best of 7, ms; NumPy's best float32 call 2.05 ms at batch 1,
torch's 6.88 at batch 8, NumPy's 16.7 at batch 64 — close to quiet figures, so best/best is
meaningful here):

  =====  =========  ==========  ==========  ==========  ==========  ==========  ==========
  batch  4-bit      3-bit       2-bit       2-bit LUT   ternary LUT binary LUT  ternary
  =====  =========  ==========  ==========  ==========  ==========  ==========  ==========
  1      1.34/0.892 2.00/0.777  1.07/0.743  0.859/0.670 0.795/0.715 0.574/0.452 1.28/1.11
  b/b    2.30       2.64        2.76        3.06        2.87        4.54        1.85
  8      3.26/1.97  3.23/1.84   3.09/1.87   2.71/1.58   2.84/1.69   1.67/1.13   1.93/1.88
  b/b    3.49       3.74        3.68        4.35        4.07        6.09        3.66
  64     24.2/12.7  14.8/12.3   22.0/15.1   19.3/10.5   18.9/13.0   8.66/6.83   18.5/12.8
  b/b    1.31       1.36        1.11        1.59        1.28        2.45        1.30
  =====  =========  ==========  ==========  ==========  ==========  ==========  ==========

  ("b/b" = best float32 call of either peer / the row's best call.) Run K, 03:09 UTC, the same
  script directly, load 0.35 → 0.9: batch 1 best 2-bit LUT 0.701, ternary LUT 0.696, binary
  LUT 0.449 ms, 4-bit 1.08, 3-bit 1.09 (the float32 peers' best calls 3.38 / 3.65 ms: disturbed).

Run L, 03:17 UTC, the same command after the fast call path of ``kbit_gemv`` /
``binary_weight_gemv`` / ``ternary_weight_gemv`` (float32 arguments: one compiled call checks
them and builds the table; 3-bit after a pause 1.10 / 0.91 ms vs 1.38 / 0.98 through the full
checks), load 0.6 → 0.3, NumPy's best float32 call 2.00 / 10.2 / 18.2 ms at batch 1 / 8 / 64;
best ms and best/best: batch 1 4-bit 0.984 (2.03×), 3-bit 0.780 (2.57×), 2-bit 0.886 (2.26×),
binary 0.657 (3.05×), ternary 0.798 (2.51×), 2-bit LUT 0.865 (2.31×), ternary LUT 0.763
(2.62×), binary LUT 0.512 (3.91×); batch 8 2.15–2.72 ms for the decode kernels (3.8–4.8×),
LUT 3.24 / 3.57 / 1.33 (3.15× / 2.86× / 7.65×); batch 64 all 1.4–3.3×. Between Run J and Run
L the same kernels' best calls moved by up to 30 % (2-bit LUT batch 1 0.67 → 0.87 ms, batch 8
1.58 → 3.24 ms): 7 rounds on this machine do not separate 2.5× from 3×.

Verdict after the LUT kernel (this shared machine; to be re-taken quiet): batch 1, ≥ 3× float32
best — binary (LUT) met (3.9–4.5×); 2-bit (LUT) 2.3–3.1× and ternary (LUT) 2.6–2.9× best/best
in Runs J and L: not met robustly; 3- and 4-bit (decode kernel) not met (2.0–2.6×), bound by
one ~2-cycle 512-bit lookup per 16 weights (a 4-bit LUT does as many lookups). What remains at
batch 1 is the cold start: back to back the public calls take binary 0.21, 2-bit 0.37 ms (load
0.5), after the 0.3 s pause 0.45–0.6 and 0.7–0.9 ms — every step runs from cold caches (a
no-op Numba call 40–50 µs, ``fast_path_isa()`` 50 µs), and the 2–4 MiB of packed weights come
back from DRAM; a software prefetch 16 or 32 chunks ahead in the LUT kernel changed nothing
measurable and was not kept. Batch 8 ≥ 3× and batch 64 ≥ 1× float32: met by every kernel in
Run J; in Run L batch 8 ternary LUT was 2.86× (the ternary decode kernel 4.75×).

Session of 2026-12-07 05:45–07:05 UTC (same machine, quiet: load 0.2–0.9; 2 threads, wall).

* The thread team (:mod:`refimpl.kernels._team`) replaces ``prange`` for the decode and LUT
  kernels: the caller starts on the 64-row blocks at once, a helper pinned to the other CPU
  joins when woken. Without the pinning, after a pause the two threads often shared one core
  (41 rounds: the caller ran all 64 blocks in 16 calls, none in most others; median 1.03 ms
  vs 0.72 placed). Against ``prange`` in the same process (4-bit, batch 1, 31 rounds): public
  calls 0.87 / 0.76 ms vs 0.90 / 0.74 (median / best) — the team helps little by itself; what
  it saved came with it: ``numba.get_num_threads()`` takes a ``multiprocessing`` lock (50–70 µs
  after the pause; read directly now), and the call's compiled steps were merged.
* The decode kernel reads each block's words as two registers of half words in place (no
  split): one thread, back to back, 4-bit 0.73 → 0.63–0.67 ms, 3-bit 0.75–0.79.
* Cold single calls, what remains between the kernel (``_prepare`` + helper + tasks, 0.58–
  0.64 ms for 4-bit) and the public call (0.77–0.80): ~0.15 ms of Python, 20–60 µs per layer
  of the call after the pause (the first step absorbs the wake-up, ~30–60 µs whatever it is).

Run M, 07:00 UTC, ``refimpl bench --quick --json`` (committed as ``headline.json``; medians /
best of 7, ms; single calls after 0.3 s idle):

  =====  =========  =========  =========  =========  =========  ==========  ==========  ==========
  batch  numpy f32  torch f32  torch int8 4-bit      3-bit      2-bit LUT   ternary LUT binary LUT
  =====  =========  =========  =========  =========  =========  ==========  ==========  ==========
  1      2.72/2.33  3.71/3.37  7.43/5.93  0.953/0.802 0.873/0.741 0.663/0.552 0.689/0.611 0.501/0.411
  b/b                                     2.90       3.14       4.22        3.81        5.66
  8      11.3/9.17  9.77/7.00  5.60/1.53  2.24/1.99  2.19/1.92  2.09/1.66   1.87/1.59   1.15/0.981
  64     22.4/17.5  33.3/22.1  4.25/3.65  14.3/12.0  14.0/13.0  13.1/10.4   14.2/10.9   7.11/5.68
  =====  =========  =========  =========  =========  =========  ==========  ==========  ==========

  The decoding pass in the same run (8 layers back to back, ms per layer): batch 1 numpy f32
  2.43 / 2.24, torch int8 0.773 / 0.649, 4-bit 0.589 / 0.558, 3-bit 0.586 / 0.523, 2-bit LUT
  0.428 / 0.367, ternary LUT 0.401 / 0.348, binary LUT 0.270 / 0.238 — best/best 4.0×, 4.3×,
  6.1×, 6.4×, 9.4× float32 and 1.16–2.7× torch int8; batch 8 3.6–7.7× float32 (torch int8
  0.92 / 0.84 ms ahead of all but binary). An earlier run (06:32 UTC, same code but before the
  half-word kernel): single calls 4-bit 0.680 (2.95×), 3-bit 0.682 (2.94×); pass 4-bit 0.510
  (2.97×, float32's best pass 1.52 ms per layer), 3-bit 0.488 (3.11×).

Verdict: batch 1 ≥ 3× float32 — met for binary, ternary and 2-bit (3.8–9.4× in every
protocol) and for 3- and 4-bit in the decoding pass (3.0–4.3×); the isolated cold single call
of 4-bit codes stays at 2.9–2.95× (3-bit 2.94–3.14×): not met there. Batch 8 and 64: met.
torch int8: beaten at batch 1 in the decoding pass, ahead from batch 8 on.

Session of 2026-12-07 09:00–10:30 UTC (same machine, quiet: load 0.2–0.8; 2 threads, wall).

* Where a cold 4-bit batch-1 call went (per-step timestamps, medians of 15, after 0.3 s idle
  interleaved with float32 BLAS): every Python or dispatcher step cost 15–60 µs after the
  pause — argument checks 41 µs, backend 37, type checks 30, ISA 24, team lookup 30, the
  separate compiled ``_prepare`` 58, the queue put waking the helper 24 — ~0.25 ms before the
  first block, beside 0.48 ms of blocks.
* The team (:mod:`refimpl.kernels._team`) now keeps its helpers asleep on POSIX semaphores and
  hands them jobs through a board (epoch-tagged claims, job fields with the arrays'
  addresses); the decode and LUT drivers are single compiled ``nogil`` calls that post the
  helper first, prepare, publish and work; the Python in front checks types with plain
  attribute tests. Public 4-bit call: 0.79 / 0.72 → 0.63–0.72 / 0.57–0.65 ms (median / best
  of 15). Inside the driver (rdtsc): post 23 µs, preparation done at 50, the helper on its
  first block at 106, the caller's 34 blocks done at 565, the helper's 30 at 578 µs — 15 µs per
  64-row block against 9.7 back to back: the weights come from DRAM after the pause.
* Packed words of ≥ 4 MiB are now NumPy allocations (``bitpack._owned``), on transparent huge
  pages like the float32 weights BLAS reads: 4-bit call 0.70 / 0.64 → 0.60–0.64 / 0.56–0.58 ms.
* A far software prefetch (16 KiB ahead, L2 hint, beside the 3 KiB one) changed nothing beyond
  the noise (0.551 / 0.485 vs 0.568 / 0.514 ms) and was not kept.
* Two bugs of the first version of the new team, found by the batch-64 LUT row (18 ms, slower
  than float32, with the helper idle): a helper woken before a long preparation (the tables of
  64 rows, ~1–2 ms) gave up polling and was lost — it now parks and ``publish`` posts it again;
  and the caller's own arrays (layout, tables) were freed after its last task while a helper
  was still on one — a segmentation fault once the helper joined; entries now wait through
  ``_team.wait_holding``. Batch 64 2-bit LUT: 18 → 10 ms.
* float32 BLAS itself is bimodal on this VM in some minutes: ``X @ W.T`` alone, 21 calls after
  0.3 s idle, medians 2.2–2.6 ms in most runs but 6.5–7.9 ms in others (calls of 5–8 ms), with
  the code before this session as well: the medians of those runs say nothing about refimpl.

Runs of ``refimpl bench --quick --json`` this session (best/best against float32 BLAS, batch 1
single cold calls; decoding pass; ms of the 4-bit call and of float32's best call):

  =====  =====  ==========  =========  =========  =========  ============  ===========  ==========
  run    UTC    4-bit       3-bit      2-bit LUT  tern. LUT  binary LUT    pass 4 / 3   CSR/torch
  =====  =====  ==========  =========  =========  =========  ============  ===========  ==========
  N      09:39  3.50 (0.57) 3.08       3.97       3.87       4.98          3.6 / 3.5    2.34
  O      09:47  2.44 (0.68) 2.68       3.47       3.44       4.01          4.2 / 4.1    2.16
  P      10:08  3.38 (0.60) 3.35       4.30       4.27       5.40          4.4 / 4.2    1.71
  Q      10:24  3.03 (0.57) 2.83       3.54       3.76       4.85          4.1 / 3.8    2.69
  =====  =====  ==========  =========  =========  =========  ============  ===========  ==========

  (float32's best call 1.99, 1.67, 2.04, 1.72 ms.) Runs N–O before the huge pages, N–P
  before the two fixes (P's batch-64 LUT rows were the single-thread 18 ms); Q is
  ``headline.json``: batch 8 4.1–8.7×, batch 64 1.3–2.9× float32 (met).

Verdict (this session): the single cold call of 3- and 4-bit codes is now at 2.4–3.5×
best/best over four runs (medians 2.6–5.3×) — ≥ 3× in most runs, not robustly: float32's best
call and ours both move ~20 % between runs on this VM. Binary, ternary and 2-bit (LUT) 3.4–5.4×
in every run; the decoding pass 3.5–9.2× in every run; batch 8 and 64 met; CSR SpMV against
``torch.sparse_csr`` 1.7–2.7×.

Session of 2026-12-07 12:03–13:20 UTC (same machine, quiet: load 0.3–0.9; 2 threads, wall;
4-bit, batch 1, 4096 × 4096 unless said).

* Where the cold call's extra time comes from. Back to back the public call takes 0.36 ms, after
  0.3 s idle 0.58 (medians of 15, code of 9e9f3de). Idling only 10 ms, or spinning 0.3 s in
  Python on the calling core instead of sleeping, costs the same; reading the 8 MiB of words
  once just before the call (P in cache) removes most of it: the weights come back from DRAM.
  The kernel did not overlap that with its work: one thread, cold 0.78–0.93 vs 0.63–0.69 ms back
  to back, while a plain read of the same 8 MiB takes 0.29–0.31 ms cold (24 GB/s).
* Read patterns, one thread, one load per cache line, 8 MiB after 0.3 s idle: one ascending
  stream 0.29–0.35 ms (24 GB/s); 2, 4, 8 or 16 interleaved rows of 2 KiB 0.66–0.85 ms
  (~10 GB/s): the hardware prefetcher follows one stream, not rows read in pairs. Without the
  software prefetch the pair kernel took 1.0–1.6 ms even with the words in the L3.
* Two kernel changes (``lowbit_gemv``): (1) full blocks of words are plain loads, only a partial
  last block is masked — one masked load for every block made the one-thread product 21 %
  slower (19.3 vs 15.2 µs per 128 rows with the words in L2; 4096 rows back to back 0.63 →
  0.49 ms; the AVX2 kernel 0.68 → 0.49–0.51 ms); (2) a one-row batch chunk takes the weight
  rows one at a time, so the words are one ascending stream: two threads, cold, median / best
  of 15, four alternated runs each: 0.59–0.66 / 0.53–0.56 ms vs 0.66–0.68 / 0.56–0.61 in pairs.
* Tried and not kept: prefetch distances of 12–160 blocks of 16 words (24, 3 KiB, stays best;
  two threads cold: 24 → 0.57–0.60 ms best, 64 → 0.62–0.63, 160 → 0.61–0.67), the L2 / NTA
  hints (within the noise); SpMV as a compiled team family like this kernel (one ``nogil``
  call instead of the Python job of ``Team.run``): 0.21 ms back to back and 0.68–0.72 ms cold,
  the same as before — the SpMV row kernel, not the call, bounds it. Posting the helper from
  Python at the top of the public call (a ctypes ``sem_post`` before the argument checks, the
  compiled ``wake`` skipping rows already posted for the coming epoch), so its wake-up
  overlaps the checks: 4-bit 0.60–0.64 ms best vs 0.56–0.60 without, 2-bit LUT 0.53–0.59 vs
  0.52–0.58 (three alternated runs of 15, cold) — no gain, not kept.
* What remains of a cold call (public 0.54 / entry 0.45 / one thread 0.79 ms best): the Python
  in front of the compiled entry, ~80 µs after the pause (``_fast``'s checks ~47 µs, the
  dispatch to the team entry ~36 µs; 14 µs back to back), the helper's wake-up (it joins
  ~55 µs after the caller starts) and the DRAM reads of the words.

Runs of ``refimpl bench --quick --json`` on this code (best/best against float32 BLAS, batch 1
single cold calls; decoding pass; ms of the 4-bit call and of float32's best call):

  =====  =====  ===========  ===========  =========  =========  ==========  ===========  =========
  run    UTC    4-bit        3-bit        2-bit LUT  tern. LUT  binary LUT  pass 4 / 3   CSR/torch
  =====  =====  ===========  ===========  =========  =========  ==========  ===========  =========
  R      12:43  3.96 (0.54)  3.90         4.47       4.35       5.83        4.9 / 5.2    2.33
  S      12:56  2.67 (0.61)  3.18         3.47       3.46       4.43        4.4 / 4.9    2.21
  T      13:10  3.80 (0.55)  3.85         4.19       4.32       5.81        4.1 / 4.1    2.50
  =====  =====  ===========  ===========  =========  =========  ==========  ===========  =========

  (float32's best call 2.13, 1.63, 2.10 ms.) T is ``headline.json``. Batch 8: 3.3–8.2× the
  faster float32 peer in all three; batch 64 1.3–3.1×; the decoding pass beats torch's int8
  ``Linear`` by 1.4–3.0×.

Verdict (this session): the single cold call of 3- and 4-bit codes is at 3.2–4.0× best/best in
two runs of three and 2.7× (4-bit) / 3.2× (3-bit) in the third, where float32's best call was
1.63 ms — still not robustly ≥ 3× for 4-bit codes; every other batch-1 format ≥ 3.2× in every
run, the decoding pass ≥ 4.1×, batch 8 and 64 met; CSR SpMV against ``torch.sparse_csr``
2.2–2.5×.

Session of 2026-12-07 14:57–16:10 UTC (same machine, quiet: load 0.0–0.9; 2 threads, wall;
batch 1, 4096 × 4096, single calls after 0.3 s idle interleaved with float32 BLAS unless said).

* Where the rest of a cold 4-bit call went (per-step ``perf_counter_ns`` stamps, medians / best
  of 23): the Python of the public call before the driver 91 / 85 µs, the step into the compiled
  driver (``_lowbit_vector`` and the dispatcher's typing of 11 arguments) 30 / 28 µs, the driver
  456 / 422 µs. After the pause a call of an empty Python function takes 8–9 µs and three
  attribute tests (``type``, ``dtype``, ``flags.c_contiguous``) 25–30 µs (1–2 µs on the next
  call): every distinct step runs from cold caches, so the number of steps is the cost.
* The compiled fronts (``lowbit_gemv._front``, ``lut_gemv._front``): a few type tests, then one
  compiled call that checks the shapes, picks the serial or the team driver and returns the
  rows. Its dispatcher compiles only signatures the checked path has served and has
  compilation disabled otherwise, so any other dtype, layout, alignment or dimension raises the
  dispatcher's ``TypeError`` and takes the checked path (same results, same messages; tests
  in ``test_lowbit_gemv.py`` / ``test_lowbit_lut.py``). Three alternated process pairs of 15
  cold calls each, medians / best, µs, before → after: 4-bit 552–617 / 522–557 → 570–588 /
  503–512; 3-bit 551–605 / 518–528 → 527–579 / 490–504; 2-bit LUT 517–548 / 478–486 →
  479–487 / 415–433; binary LUT 397–430 / 350–392 → 336–361 / 297–316 (float32's best call
  1.56–2.18 ms in the same processes).
* Cold reads on one core, 8 MiB of packed words after 0.3 s idle: a vectorised sum over every
  word 0.32–0.36 ms (25 GB/s), one scalar load per cache line 0.77–0.98 ms; the one-thread
  4-bit kernel 0.67–0.85 ms cold against 0.50–0.54 back to back, 0.65–0.79 without its
  software prefetch (two alternated pairs, within the noise of 0.67–0.74 with it): the words'
  reads overlap the decode only in part, prefetch or not.
* Tried and not kept: helpers polling their semaphore (``sem_trywait``, ~0.1 ms) after each
  call before sleeping, so calls back to back find them awake — CSR SpMV back to back 205–211
  vs 212–214 µs best, 4-bit 264–267 vs 266–269 (three alternated pairs): no gain.

Runs of ``refimpl bench --quick --json`` on this code (best/best against float32 BLAS, batch 1
single cold calls; decoding pass; ms of the 4-bit call and of float32's best call):

  =====  =====  ===========  ===========  =========  =========  ==========  ===========  =========
  run    UTC    4-bit        3-bit        2-bit LUT  tern. LUT  binary LUT  pass 4 / 3   CSR/torch
  =====  =====  ===========  ===========  =========  =========  ==========  ===========  =========
  U      15:25  4.05 (0.51)  4.15         5.02       5.03       6.86        4.8 / 5.7    2.46
  V      15:38  4.22 (0.48)  3.93         4.55       4.75       7.22        4.1 / 4.1    1.83
  =====  =====  ===========  ===========  =========  =========  ==========  ===========  =========

  (float32's best call 2.05 and 2.02 ms.) V is ``headline.json``. Batch 8: every format
  3.5–8.0× the faster float32 peer in both (decode kernels 3.5–4.2×, LUT 3.9–8.0×); batch 64:
  1.3–3.1×. The decoding pass beats torch's int8 ``Linear`` at batch 1 by 1.04–3.6×. CSR SpMV:
  refimpl 0.209 / 0.226 ms, ``torch.sparse_csr``'s best call 0.513 / 0.414 ms.

Verdict (this session): the single cold call at batch 1 is ≥ 3.9× float32 BLAS for every
format in both runs (4-bit 4.05–4.22×, 3-bit 3.93–4.15×); counting the runs R–T before the
fronts, 4-bit was 2.7–4.0×, and the one run below 3× had float32's best call at 1.63 ms — at
that float32 time the 4-bit calls of U and V (0.48–0.51 ms) would be 3.2–3.4×. Batch 8 and 64
met in every run. CSR SpMV against ``torch.sparse_csr``: 1.7–2.7× over the runs N–V, below 2×
in two of nine (P, V): not robustly met.
Session of 2026-12-07 18:23–21:20 UTC, on another machine: a 2-vCPU Intel Xeon with AMX and
AVX512-FP16 under KVM (LLVM "rocketlake"), 4 MiB L2 per core, OpenBLAS 'SkylakeX', no change
to these kernels. Two runs of ``refimpl bench --quick`` (18:37 and 18:55 UTC), medians ``x f32``
of the second, batch 1 single cold calls: 4-bit 2.02, 3-bit 3.25, 2-bit LUT 2.81, ternary LUT
2.99, binary LUT 4.46 (best/best in the first run: 1.9, 3.14, 2.16, 2.71, 2.94); batch 8:
2.99–5.56; batch 64: LUT formats 1.38–2.58, 3-/4-bit decode 1.09–1.13; the decoding pass at
batch 1 2.7–5.5× float32 and 1.5–3.7× torch int8. Back to back the 4-bit call is 3.1× float32
here (0.40 vs 1.23 ms); after 0.3 s idle it is 1.2–2.2 ms. Why: on this VM every 4 KiB page
first touched after a pause costs 0.22–0.36 µs (one float read per page of an 8 MiB array:
0.45–0.74 ms after 0.3 s idle, 0.013 ms back to back; every cache line: 0.60–1.2 ms vs 0.29),
a per-page cost — translation and the first miss of each page, where the hardware prefetchers
stop — that the packed weights pay per byte 8× more often than float32's streaming GEMV. A
longer software prefetch (8 and 16 KiB instead of 3 KiB ahead) did not help (cold 4-bit best
1.2–1.9 ms either way, two alternated rounds). So on this machine the batch-1 targets are met
back to back and missed cold for 4-, 2-bit and ternary weights.
Next session, same machine, no change to these kernels: batch-1 single cold calls, medians
``x f32`` (float32's median ms): 21:40 UTC (batch 1 only, 9 rounds) 4-bit 2.97, 3-bit 3.25,
2-bit LUT 3.13, ternary LUT 3.75, binary LUT 5.53 (4.08 ms); ``refimpl bench --quick`` at
22:20 UTC 4-bit 2.50, 3-bit 3.12, 2-bit LUT 3.42, ternary LUT 3.14, binary LUT 4.02, and at
22:39 UTC 4.59, 5.78, 6.33, 5.15, 6.76 (4.1 ms; best 2.47 ms, best/best 3.3–5.6). The ratio
follows float32's cold call, which moves more than the packed kernels' between runs; the
4-bit call is 0.74–1.4 ms cold against 0.40–0.43 ms back to back. Huge pages do not remove
the cold cost: the 8 MiB of 4-bit words fully in 2 MiB pages (aligned, MADV_HUGEPAGE) ran a
cold call in 1.50 ms median against 1.81 ms in 4 KiB pages and 1.56 ms for NumPy's
allocation (6 of 8 MiB in huge pages), 15 alternated rounds each.

Session of 2026-12-08 00:40–01:20 UTC, same Intel machine, no change to these kernels (4-bit,
batch 1, 4096 × 4096, medians / best of 13–21 single calls after 0.3 s idle, ms). Host slower
than the day before: the 4-bit call back to back 0.49–0.56 (0.40–0.43 then).

* Cold against float32 BLAS in three alternated process pairs: 4-bit 1.13–1.24 / 0.79–1.00,
  float32 3.07–3.14 / 2.43–2.47 — medians 2.5–2.7×, under the 3× target in every pair. The
  AVX2 kernel (``REFIMPL_LOWBIT_ISA=avx2``) is slower cold too (1.50–1.77 / 1.30–1.40).
* The data are not the whole cold cost. One thread: back to back 0.76, after the pause 1.80,
  after the pause and a read of all 8 MiB of words on the same core just before 1.30, after
  the pause and 1.7 ms of arithmetic on both cores (no memory) 1.42. Two threads: 0.49 back to
  back, 1.26 after the pause, 0.81–0.90 after reading the words, 0.99 after the arithmetic.
  The cores run the first milliseconds after an idle spell slower (clock ramp, cold
  instruction and translation caches), and a call of under 1 ms is all first milliseconds;
  float32's 3 ms call is memory-bound and absorbs it.
* Plain reads, numba loop, per thread, cold: 4 MiB 0.40 ms on each of two threads at once
  (10 GB/s each), 8 MiB 1.0 ms on one (8 GB/s); one load per 4 KiB page of the 8 MiB: 0.57 ms
  — the per-page cost of the day before. A prefetch once per page 1–16 pages ahead, or a real
  load one page ahead, did not lower a cold plain read (1.1–1.5 vs 1.05 ms).
* The work split: the caller and the helper took 27–39 and 25–37 of the 64 blocks in every
  cold call (the helper is woken in time; the per-block time is the cost).
* The kernel's own limit: per 16 words (256 4-bit codes) it issues 14 shifts, 16 lookups
  (``vpermd``) and 16 FMAs on the two 512-bit ports, ~23 cycles or ~11 codes per cycle; one thread back to
  back does 16.8 M codes in 0.76 ms, 8.4 codes per cycle at 2.6 GHz (the TSC's rate; the core
  clock under KVM is not visible): within ~25 % of that bound, so a cold call cannot gain much
  from the arithmetic side either.
* Tried and not kept: the prefetch with the L2 hint (locality 1) instead of L1 — cold two
  threads 1.18–1.54 vs 0.95–1.23 ms, three alternated pairs; no prefetch at all — 1.32–1.43
  vs 0.94–0.96.

Both protocols in one session (00:57 and 01:10 UTC, load 0.2–0.5, 11 rounds each; ``x f32``
against the faster float32 peer's median; the roofline line: memory 29 GB/s, float32 GEMM
279–294 GFLOP/s):

  ===========  =========================  =========================  ==========================
  protocol     batch 1                    batch 8                    batch 64
  ===========  =========================  =========================  ==========================
  cold         4-bit 3.36, 3-bit 4.03,    4.83–7.71 every kernel     4-bit 1.27, 3-bit 1.20,
  (default)    others 3.22–5.09           (best/best 3.50–7.34)      2-bit LUT 1.20, ternary
               (best/best 4-bit 3.11)                                LUT 1.19, binary LUT 2.55
                                                                     (best/best 0.80–0.91,
                                                                     binary LUT 1.96)
  ``--warm``   4-bit 3.98, 3-bit 4.08,    4-bit 2.68, 3-bit 2.45,    4-bit 0.72, 3-bit 0.68,
               others 3.79–9.30           2-bit LUT 3.27, ternary    2-bit LUT 0.95, ternary
                                          LUT 3.12, binary LUT 6.22  LUT 0.96, binary LUT 1.82
  ===========  =========================  =========================  ==========================

  Warm, the float32 peer is torch's (4.18 ms at batch 8, 10.8 ms at batch 64; NumPy's 7.21 and
  13.5), against 7.12 and 18.2 ms on the Zen 4 machine (Run H above), where the same kernels
  took 2.33 and 12.2 ms (here 1.56 and 15.1). At batch 64 the products are compute-bound:
  4-bit on one thread, back to back, 50 G multiply-adds/s at K = 4096 and 46 at K = 1024
  (activations of 8 batch rows in L1: not an activation-bandwidth limit), i.e. ~19 per
  cycle at 2.6 GHz against ~26 for its decode + FMA port bound and 32 for the FMA units (the
  compiled 8-batch-row chunk, per 16 words of two weight rows: 256 FMAs, 32 ``vpermd``, 28
  shifts, the activations as plain loads, no spills; the clock of heavy 512-bit code under
  KVM is not visible, and at ~2 GHz it would sit at that bound).
  So on this CPU the 3- and 4-bit batch-8 and every batch-64 target except binary hold only
  against float32's cold calls, not against its steady state; the decoding pass (cold, 8
  layers) gave 3.90–8.18× at batch 1 and 4.06–7.70× at batch 8 in the same session.

* ``refimpl bench --quick`` at 02:06 UTC (``headline.json``; the record now holds the steady
  state too, as cases "…, steady state (call 3 of a burst)"), ``x f32`` medians: cold batch 1
  3.91–6.39 (4-bit 3.99, best/best 3.11), batch 8 4.29–7.79, batch 64 4-bit 0.97, 3-bit 0.93,
  2-bit / ternary / binary LUT 1.08 / 1.18 / 2.31; steady state batch 1 3.55–11.9, batch 8
  4-bit 2.51, 3-bit 2.56, LUT 3.27–6.55, batch 64 3-/4-bit 0.68–0.72, LUT 1.05–1.79; the
  decoding pass 3.40–8.53 at batch 1.
* Tried and not kept: chunks of 16 batch rows taken one weight row at a time (half the decode
  per multiply-add, but one activation load per FMA): bit-identical results, 2–3× slower —
  4-bit batch 16 one thread 16.1–16.4 vs 5.2 ms, batch 64 two threads warm 17.8–34.2 vs
  15.2–15.4 ms (two alternated process pairs).
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
from _common import (note_missing_peer, parse_args, print_environment, print_table, ratio,
                     record, write_json)

from refimpl.kernels import bitpack as bp
from refimpl.kernels import lowbit_gemv as lg
from refimpl.kernels import lut_gemv as lut


#: Kernels whose batch-1 and batch-8 cases are headline cases of ``refimpl bench --json``.
_HEADLINE = ("4-bit", "3-bit", "2-bit LUT", "ternary LUT", "binary LUT")
#: Weight matrices of the decoding-pass protocol (:func:`_measure_pass`): at 4096 × 4096 their
#: packed 3- and 4-bit codes (49 and 64 MiB) exceed the 32 MiB last-level cache.
_PASS_LAYERS = 8


def _interleaved(fns: dict, rounds: int, settle: float = 0.3, clock=time.perf_counter,
                 burst: int = 1) -> dict:
    """``{name: (median, best)}`` seconds per call, the functions called in turn (one call
    each per round, ``settle`` s idle before each) so a busy spell hits all of them alike.
    ``clock``: wall time, or ``time.process_time`` (CPU seconds of the whole process: with one
    thread per library, the work of a call, whatever share of the CPU the scheduler gave it).
    ``burst`` > 1: after the idle, ``burst − 1`` untimed calls of the same function, then the
    timed one (``--warm``: a decoding loop's steady state, weights in cache, threads awake)."""
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up: JIT, caches, torch's first-call setup
        f()
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            time.sleep(settle)
            for _ in range(burst - 1):
                f()
            t0 = clock()
            f()
            times[k].append(clock() - t0)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def _torch_peers(W, threads):
    """float32 ``torch.mm`` and the int8 dynamic-quantised Linear, or None without torch."""
    try:
        import warnings

        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
        # quantize_dynamic swaps the *children* of the module it is given: a bare Linear comes
        # back unchanged (float32), so it is wrapped (runs before 2026-12-07 00:10 UTC timed
        # that float32 Linear as "torch int8")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                   dtype=torch.qint8)
    kind = f"{type(q[0]).__module__}.{type(q[0]).__name__}"
    assert ".quantized.dynamic." in kind, f"torch int8 peer is not quantised: {kind}"
    return torch, torch.from_numpy(W), q


def _check(name, Y, X, W, s=None):
    """The kernel's result within the float32 rounding bound of the float64 product."""
    ref = X.astype(np.float64) @ W.T.astype(np.float64)
    absref = np.abs(X).astype(np.float64) @ np.abs(W).T.astype(np.float64)
    if s is not None:
        ref, absref = ref * s, absref * np.abs(s)
    K = X.shape[1]
    bound = (K + 2) * 2.0 ** -24 * absref + 2.0 ** -24 * np.abs(ref)
    assert np.all(np.abs(Y - ref) <= bound), f"{name} disagrees with the float64 product"


def _row(B, k, t) -> dict:
    """The table row of kernel ``k`` from ``t`` = ``{name: (median, best)}`` seconds: ms, the
    ratio to the faster float32 peer's median (``x f32``), best float32 call of either peer /
    the row's best (``best/best``: BLAS at its best) and the ratio to torch int8's median."""
    f32_names = [n for n in ("numpy f32", "torch f32") if n in t]
    med, best = t[k]
    row = {"batch": B, "kernel": k, "median ms": med * 1e3, "best ms": best * 1e3,
           "x f32": ratio(min(t[n][0] for n in f32_names), med),
           "best/best": ratio(min(t[n][1] for n in f32_names), best)}
    if "torch int8" in t:
        row["x int8"] = ratio(t["torch int8"][0], med)
    return row


def _measure(B, N, K, rng, rounds, threads, clock, old_path=False, quick=True, burst=1):
    X = rng.standard_normal((B, K)).astype(np.float32)
    W = rng.standard_normal((N, K)).astype(np.float32)
    s = rng.uniform(0.5, 1.5, N).astype(np.float32)
    peers = _torch_peers(W, threads)
    if peers is None:
        note_missing_peer("lowbit", "torch f32 / torch int8", "torch is not installed")
    fns = {"numpy f32": lambda: X @ W.T}
    if peers is not None:
        torch, Wt, q = peers
        Xt = torch.from_numpy(X)

        def tmm():
            return torch.mm(Xt, Wt.T)

        def tint8():
            with torch.no_grad():
                return q(Xt)

        fns["torch f32"] = tmm
        fns["torch int8"] = tint8
    # bytes of weight data each call reads (codes + codebook + scales; int8 weights + scales)
    weights_bytes = {"numpy f32": W.nbytes, "torch f32": W.nbytes, "torch int8": N * K + 4 * N}
    for bits in (4, 3, 2):
        codes = rng.integers(0, 2 ** bits, (N, K))
        cb = np.sort(rng.standard_normal(2 ** bits)).astype(np.float32)
        P = bp.pack_codes(codes, bits)
        _check(f"{bits}-bit", lg.kbit_gemv(X, P, bits, K, cb, s), X, cb[codes], s)
        fns[f"{bits}-bit"] = (lambda P=P, bits=bits, cb=cb: lg.kbit_gemv(X, P, bits, K, cb, s))
        weights_bytes[f"{bits}-bit"] = P.nbytes + cb.nbytes + s.nbytes
        if bits == 4:
            P4, cb4 = P, cb
        if bits == 2:
            P2, cb2, codes2 = P, cb, codes
    signs = rng.choice(np.array([-1.0, 1.0], np.float32), (N, K))
    Wp = bp.pack_signs(signs)
    _check("binary", lg.binary_weight_gemv(X, Wp, K, s), X, signs, s)
    fns["binary"] = lambda: lg.binary_weight_gemv(X, Wp, K, s)
    weights_bytes["binary"] = Wp.nbytes + s.nbytes
    T = rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), (N, K))
    Tp = bp.pack_ternary(T)
    _check("ternary", lg.ternary_weight_gemv(X, Tp, K, s), X, T, s)
    fns["ternary"] = lambda: lg.ternary_weight_gemv(X, Tp, K, s)
    weights_bytes["ternary"] = 2 * Tp[0].nbytes + s.nbytes
    # T-MAC-style table lookup on the activations (refimpl.kernels.lut_gemv) on the LUT layout:
    # the repack (lut_pack*) is done here, once, outside the timed region, like T-MAC's offline
    # repack; the kernel reads only the stored layout (lw.nbytes: the same bytes as the packed
    # codes, rows padded to 16)
    lut_cases = {"2-bit LUT": (lut.lut_pack(P2, 2, K, cb2), cb2[codes2]),
                 "ternary LUT": (lut.lut_pack_ternary(Tp, K), T),
                 "binary LUT": (lut.lut_pack_binary(Wp, K), signs)}
    for name, (lw, Wdense) in lut_cases.items():
        _check(name, lut.lut_gemv(X, lw, s), X, Wdense, s)
        fns[name] = (lambda lw=lw: lut.lut_gemv(X, lw, s))
        weights_bytes[name] = lw.nbytes + 4 * lw.codebook.size + s.nbytes
    # int8 activations x int8 weights (VNNI): torch int8 dynamic Linear's contract (activations
    # quantised per row at each call), checked bit for bit against the NumPy twin (exact
    # integer sums, one float rescale)
    Wq8, ws8 = lg.quantize_rows_int8(W)
    Y8 = lg.int8_gemv(X, Wq8, ws8)
    assert np.array_equal(Y8, lg.int8_gemv(X, Wq8, ws8, backend="numpy")), "int8 vs NumPy"
    fns["int8 (VNNI)" if lg.vnni_available() else "int8 (loops)"] = \
        lambda: lg.int8_gemv(X, Wq8, ws8)
    weights_bytes["int8 (VNNI)" if lg.vnni_available() else "int8 (loops)"] = \
        Wq8.nbytes + ws8.nbytes
    if old_path:  # 0.05-1.5 s per call: only on request
        fns["old 4-bit"] = lambda: bp._kbit_matmul_numba(X, P4, 4, K, cb4)
        weights_bytes["old 4-bit"] = weights_bytes["4-bit"]
    load0 = os.getloadavg()[0]
    t = _interleaved(fns, rounds, clock=clock, burst=burst)
    load1 = os.getloadavg()[0]
    f32_names = [k for k in ("numpy f32", "torch f32") if k in t]
    f32_name = min(f32_names, key=lambda k: t[k][0])
    peer_names = [k for k in ("numpy f32", "torch f32", "torch int8") if k in t]
    best_peer = min(peer_names, key=lambda k: t[k][0])
    rows = []
    for k in t:
        row = _row(B, k, t)
        med, best = t[k]
        row["x best peer"] = ratio(t[best_peer][0], med)
        row["weights GB/s"] = weights_bytes[k] / med / 1e9
        rows.append(row)
        if k in peer_names or k.startswith("old"):
            continue
        # one record per refimpl kernel for `refimpl bench --json` (benchmarks/_common.record):
        # compulsory traffic = packed weights + codebook/scales + X read once + Y written once
        case = f"{k} weights {N}x{K}, batch {B}" + (
            f", steady state (call {burst} of a burst)" if burst > 1 else "")
        record("lowbit", case, f"lowbit_gemv {k}", (best, med),
               peers={p: (t[p][1], t[p][0]) for p in peer_names},
               numpy_baseline="numpy f32",
               bytes_moved=weights_bytes[k] + X.nbytes + 4 * B * N, flops=2.0 * B * N * K,
               params={"batch": B, "N": N, "K": K, "threads": threads,
                       "clock": clock.__name__, "burst": burst},
               headline=(k in _HEADLINE and B in (1, 8) and burst == 1), quick=quick)
    print(f"# batch {B}: {rounds} interleaved rounds (timed call {burst} of a burst after "
          f"0.3 s idle), load average {load0:.2f} -> {load1:.2f}; "
          f"'x f32' = median of the faster float32 peer ({f32_name}) / median of the row, "
          f"'best/best' = best float32 call of either peer / best call of the row; "
          f"best peer by median: {best_peer}")
    return rows, {"load": (load0, load1)}


def _measure_pass(B, N, K, L, rng, rounds, threads, quick=True):
    """The decoding-pass protocol: one call per layer through ``L`` distinct ``N × K`` weight
    matrices, back to back (a token through a stack of quantised ``Linear`` layers), 0.3 s idle
    before each pass, the libraries' passes interleaved; the time per layer is the pass time
    / ``L``. Code, threads and small buffers are warm after the first layer, the weights are
    not: the layers' weights together exceed the last-level cache for the float32, int8, 3-
    and 4-bit cases, and every pass of the others evicts them. The layers hold copies of one
    matrix (distinct memory, the same values), so one check covers them."""
    X = rng.standard_normal((B, K)).astype(np.float32)
    W = rng.standard_normal((N, K)).astype(np.float32)
    s = rng.uniform(0.5, 1.5, N).astype(np.float32)
    Ws = [W.copy() for _ in range(L)]
    fns = {"numpy f32": lambda: [X @ w.T for w in Ws]}
    peers = _torch_peers(W, threads)
    if peers is not None:
        torch = peers[0]
        Xt = torch.from_numpy(X)
        Wts = [torch.from_numpy(w) for w in Ws]
        qs = [peers[2]] + [_torch_peers(w, threads)[2] for w in Ws[1:]]

        def tint8():
            with torch.no_grad():
                return [q(Xt) for q in qs]

        fns["torch f32"] = lambda: [torch.mm(Xt, w.T) for w in Wts]
        fns["torch int8"] = tint8
    for bits in (4, 3):
        codes = rng.integers(0, 2 ** bits, (N, K))
        cb = np.sort(rng.standard_normal(2 ** bits)).astype(np.float32)
        P = bp.pack_codes(codes, bits)
        _check(f"{bits}-bit", lg.kbit_gemv(X, P, bits, K, cb, s), X, cb[codes], s)
        Ps = [P.copy() for _ in range(L)]
        fns[f"{bits}-bit"] = (lambda Ps=Ps, bits=bits, cb=cb:
                              [lg.kbit_gemv(X, p, bits, K, cb, s) for p in Ps])
    codes = rng.integers(0, 4, (N, K))
    cb = np.sort(rng.standard_normal(4)).astype(np.float32)
    signs = rng.choice(np.array([-1.0, 1.0], np.float32), (N, K))
    T = rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), (N, K))
    lut_cases = {"2-bit LUT": (lut.lut_pack(bp.pack_codes(codes, 2), 2, K, cb), cb[codes]),
                 "ternary LUT": (lut.lut_pack_ternary(bp.pack_ternary(T), K), T),
                 "binary LUT": (lut.lut_pack_binary(bp.pack_signs(signs), K), signs)}
    for name, (lw, Wdense) in lut_cases.items():
        _check(name, lut.lut_gemv(X, lw, s), X, Wdense, s)
        lws = [lw._replace(words=lw.words.copy()) for _ in range(L)]
        fns[name] = lambda lws=lws: [lut.lut_gemv(X, w, s) for w in lws]
    load0 = os.getloadavg()[0]
    t = {k: (med / L, best / L) for k, (med, best) in _interleaved(fns, rounds).items()}
    load1 = os.getloadavg()[0]
    peer_names = [k for k in ("numpy f32", "torch f32", "torch int8") if k in t]
    rows = []
    for k, (med, best) in t.items():
        rows.append(_row(B, k, t))
        if k in peer_names:
            continue
        record("lowbit", f"{k} weights {N}x{K}, batch {B}, {L}-layer pass",
               f"lowbit_gemv {k}", (best, med),
               peers={p: (t[p][1], t[p][0]) for p in peer_names}, numpy_baseline="numpy f32",
               flops=2.0 * B * N * K,
               params={"batch": B, "N": N, "K": K, "threads": threads, "layers": L,
                       "protocol": "decoding pass: layers back to back, 0.3 s idle per pass"},
               headline=(B == 1 and k in _HEADLINE), quick=quick)
    print(f"# batch {B}, {L}-layer decoding pass: {rounds} interleaved rounds (0.3 s idle "
          f"before each pass; times per layer), load average {load0:.2f} -> {load1:.2f}")
    return rows


def ratio_table(rows, kernels=None, ratio_key="x f32", width=11) -> str:
    """The docstring's table of a run: one line per batch with each kernel's ``median / best``
    ms, then a line of ``ratio_key`` (the kernel's ratio to the float32 peer); ``kernels``
    defaults to every kernel of the rows, in order."""
    batches = sorted({r["batch"] for r in rows})
    kernels = kernels or list(dict.fromkeys(r["kernel"] for r in rows))
    by = {(r["batch"], r["kernel"]): r for r in rows}
    cols = ["batch"] + list(kernels)
    rule = "  ".join("=" * max(width, len(c)) for c in cols)
    fmt = "  ".join(f"{{:<{max(width, len(c))}}}" for c in cols)
    lines = [rule, fmt.format(*cols), rule]
    for B in batches:
        cells = [str(B)] + [f"{by[B, k]['median ms']:.3g}/{by[B, k]['best ms']:.3g}"
                            if (B, k) in by else "" for k in kernels]
        lines.append(fmt.format(*cells))
        cells = [ratio_key] + [f"{by[B, k][ratio_key]:.2f}" if (B, k) in by and
                               ratio_key in by[B, k] else "" for k in kernels]
        lines.append(fmt.format(*cells))
    lines.append(rule)
    return "\n".join("  " + ln.rstrip() for ln in lines)


def main(argv=None):
    args = parse_args("low-bit weight x float activation products vs float32 BLAS, torch.mm "
                      "and torch int8 dynamic Linear", argv,
                      extra=[("--one-thread", "every library on one thread (BLAS, torch, "
                              "Numba): steadier on a shared machine"),
                             ("--cpu-time", "with --one-thread: time calls by the process's CPU "
                              "seconds (time.process_time), not wall time"),
                             ("--old-path", "also time kbit_matmul's decode-then-BLAS path "
                              "(slow)"),
                             ("--warm", "time the 3rd of 3 back-to-back calls after each idle "
                              "pause (a decoding loop: weights in cache, threads awake) "
                              "instead of the first")])
    import numba

    threads = os.cpu_count() or 1
    if args.one_thread:
        from threadpoolctl import threadpool_limits

        threads = 1
        threadpool_limits(1)
        numba.set_num_threads(1)
    env = print_environment()

    print(f"# lowbit_gemv kernel: {lg.fast_path_isa() or 'portable loops'} (CPU: "
          f"{lg.cpu_isa()}; ${lg.ISA_ENV}={os.environ.get(lg.ISA_ENV, '')!r}); threads "
          f"(numba, torch): {numba.get_num_threads()}, {threads}")
    N = K = 4096
    rounds = args.repeat or (7 if args.quick else 21)
    rng = np.random.default_rng(0)
    clock = time.process_time if (args.cpu_time and args.one_thread) else time.perf_counter
    print(f"# clock: {clock.__name__}")
    rows, meta = [], {}
    for B in (1, 8, 64):
        r, m = _measure(B, N, K, rng, rounds, threads, clock, args.old_path, args.quick,
                        burst=3 if args.warm else 1)
        rows += r
        meta[B] = m
    print_table(rows)
    print("# median/best ms; 'x f32' = the faster float32 peer's median / the row's median")
    print(ratio_table(rows))
    pass_rows, steady_rows = [], []
    if not args.one_thread and not args.warm:
        for B in (1, 8):
            pass_rows += _measure_pass(B, N, K, _PASS_LAYERS, rng, rounds, threads, args.quick)
        print(f"# decoding pass ({_PASS_LAYERS} layers back to back), ms per layer")
        print(ratio_table(pass_rows))
        print(ratio_table(pass_rows, ratio_key="best/best"))
        # the steady state as well (the --warm protocol), so the record holds both: on some
        # CPUs the batch-8/64 verdicts differ (bench docstring, session of 2026-12-08)
        for B in (1, 8, 64):
            r, _ = _measure(B, N, K, rng, rounds, threads, clock, quick=args.quick, burst=3)
            steady_rows += r
        print("# steady state: the timed call is the 3rd of a burst after each pause "
              "(weights in cache, threads awake)")
        print(ratio_table(steady_rows))
    if args.json:
        write_json("bench_lowbit", {"env": env, "rows": rows, "pass_rows": pass_rows,
                                    "steady_rows": steady_rows, "meta": meta})


if __name__ == "__main__":
    main()
