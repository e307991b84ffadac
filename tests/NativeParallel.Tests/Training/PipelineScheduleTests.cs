using NativeParallel.Training;

namespace NativeParallel.Tests.Training;

/// <summary>
/// The pipeline schedules as data, checked by running every stage's list together in a simulation with blocking
/// sends and receives (a transfer completes only when both sides are at it): no deadlock, every micro-batch forward
/// then backward exactly once on every stage in a legal order, and no stage ever holding more micro-batches than its
/// activation slots.
/// </summary>
public sealed class PipelineScheduleTests
{
    public static TheoryData<PipelineScheduleKind, int, int> Shapes()
    {
        var data = new TheoryData<PipelineScheduleKind, int, int>();
        foreach (var kind in new[] { PipelineScheduleKind.GPipe, PipelineScheduleKind.OneForwardOneBackward })
            foreach (int p in new[] { 1, 2, 3, 4 })
                foreach (int m in new[] { 1, 2, 3, 4, 7, 8 })
                    data.Add(kind, p, m);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EveryStageRunsToTheEndWithBlockingTransfers(PipelineScheduleKind kind, int p, int m)
    {
        var plans = Enumerable.Range(0, p).Select(s => PipelineSchedule.Training(kind, p, s, m)).ToArray();
        var peak = Simulate(plans, p, m, kind);
        for (int s = 0; s < p; s++)
        {
            // 1F1B reaches its bound exactly; GPipe holds every micro-batch.
            Assert.Equal(PipelineSchedule.InFlight(kind, p, s, m), peak[s]);
        }
    }

    [Fact]
    public void OneForwardOneBackwardHoldsFewerMicroBatchesThanGPipe()
    {
        Assert.Equal(8, PipelineSchedule.InFlight(PipelineScheduleKind.GPipe, 4, 0, 8));
        Assert.Equal(4, PipelineSchedule.InFlight(PipelineScheduleKind.OneForwardOneBackward, 4, 0, 8));
        Assert.Equal(1, PipelineSchedule.InFlight(PipelineScheduleKind.OneForwardOneBackward, 4, 3, 8));
        // The last stage of 1F1B alternates from the start: F0 B0 F1 B1 ...
        var last = PipelineSchedule.Training(PipelineScheduleKind.OneForwardOneBackward, 2, 1, 3).Where(a => a.Op is PipelineOp.Forward or PipelineOp.Backward);
        Assert.Equal(["Forward(0)", "Backward(0)", "Forward(1)", "Backward(1)", "Forward(2)", "Backward(2)"], last.Select(a => a.ToString()));
        Assert.Equal(0.2, PipelineSchedule.Bubble(2, 4), 12);
    }

    [Fact]
    public void BadShapesAndNamesAreRefused()
    {
        Assert.Throws<ArgumentException>(() => PipelineSchedule.Training(PipelineScheduleKind.GPipe, 2, 2, 4));
        Assert.Throws<ArgumentException>(() => PipelineSchedule.Training(PipelineScheduleKind.GPipe, 2, 0, 0));
        Assert.Contains("gpipe or 1f1b", Assert.Throws<ArgumentException>(() => PipelineSchedule.Parse("zigzag")).Message);
        Assert.Equal(PipelineScheduleKind.OneForwardOneBackward, PipelineSchedule.Parse("1F1B"));
    }

    // A half of an action: a send or a receive of one micro-batch's activation (forward) or gradient (backward) with a neighbour.
    private readonly record struct Half(bool Send, int Peer, bool Gradient, int MicroBatch);

    private static List<Half> Halves(PipelineAction a, int stage) => a.Op switch
    {
        PipelineOp.RecvActivation => [new Half(false, stage - 1, false, a.MicroBatch)],
        PipelineOp.SendActivation => [new Half(true, stage + 1, false, a.MicroBatch)],
        PipelineOp.RecvGradient => [new Half(false, stage + 1, true, a.MicroBatch)],
        PipelineOp.SendGradient => [new Half(true, stage - 1, true, a.MicroBatch)],
        PipelineOp.SendActivationRecvGradient => [new Half(true, stage + 1, false, a.MicroBatch), new Half(false, stage + 1, true, a.Other)],
        PipelineOp.SendGradientRecvActivation => [new Half(true, stage - 1, true, a.MicroBatch), new Half(false, stage - 1, false, a.Other)],
        _ => [],
    };

    // Runs the stages together; returns each stage's peak micro-batches in flight (forward done, backward not yet).
    private static int[] Simulate(PipelineAction[][] plans, int p, int m, PipelineScheduleKind kind)
    {
        var next = new int[p];
        var pending = new List<Half>?[p];
        var forwarded = new bool[p, m];
        var backwarded = new bool[p, m];
        var hasInput = new bool[p, m];
        var hasGradient = new bool[p, m];
        var inFlight = new int[p];
        var peak = new int[p];
        var slotOwner = Enumerable.Range(0, p).Select(s => Enumerable.Repeat(-1, PipelineSchedule.InFlight(kind, p, s, m)).ToArray()).ToArray();
        while (true)
        {
            bool progress = false, done = true;
            for (int s = 0; s < p; s++)
            {
                if (next[s] >= plans[s].Length) continue;
                done = false;
                var a = plans[s][next[s]];
                if (a.Op == PipelineOp.Forward)
                {
                    Assert.True(s == 0 || hasInput[s, a.MicroBatch], $"stage {s}: forward of micro-batch {a.MicroBatch} before its input arrived");
                    Assert.False(forwarded[s, a.MicroBatch], $"stage {s}: micro-batch {a.MicroBatch} forward twice");
                    int slot = a.MicroBatch % slotOwner[s].Length;
                    Assert.True(slotOwner[s][slot] == -1, $"stage {s}: micro-batch {a.MicroBatch} takes slot {slot} still held by {slotOwner[s][slot]}");
                    slotOwner[s][slot] = a.MicroBatch;
                    forwarded[s, a.MicroBatch] = true;
                    peak[s] = Math.Max(peak[s], ++inFlight[s]);
                }
                else if (a.Op == PipelineOp.Backward)
                {
                    Assert.True(forwarded[s, a.MicroBatch], $"stage {s}: backward of micro-batch {a.MicroBatch} before its forward");
                    Assert.True(s == p - 1 || hasGradient[s, a.MicroBatch], $"stage {s}: backward of micro-batch {a.MicroBatch} before its output gradient arrived");
                    Assert.False(backwarded[s, a.MicroBatch], $"stage {s}: micro-batch {a.MicroBatch} backward twice");
                    backwarded[s, a.MicroBatch] = true;
                    slotOwner[s][a.MicroBatch % slotOwner[s].Length] = -1;
                    inFlight[s]--;
                }
                else
                {
                    pending[s] ??= Halves(a, s);
                    foreach (var half in pending[s]!.ToArray())
                    {
                        Assert.InRange(half.Peer, 0, p - 1);
                        // The matching half: the peer's current action receiving what this one sends, or the reverse.
                        int peer = half.Peer;
                        if (next[peer] >= plans[peer].Length) continue;
                        var peerHalves = Halves(plans[peer][next[peer]], peer);
                        if (peerHalves.Count == 0) continue;  // the peer is computing
                        pending[peer] ??= peerHalves;
                        var match = new Half(!half.Send, s, half.Gradient, half.MicroBatch);
                        if (!pending[peer]!.Remove(match)) continue;
                        pending[s]!.Remove(half);
                        var (receiver, sender) = half.Send ? (peer, s) : (s, peer);
                        if (half.Gradient)
                        {
                            Assert.True(backwarded[sender, half.MicroBatch], $"stage {sender} sends micro-batch {half.MicroBatch}'s gradient before its backward");
                            hasGradient[receiver, half.MicroBatch] = true;
                        }
                        else
                        {
                            Assert.True(forwarded[sender, half.MicroBatch], $"stage {sender} sends micro-batch {half.MicroBatch}'s output before its forward");
                            hasInput[receiver, half.MicroBatch] = true;
                        }
                        progress = true;
                        if (pending[peer]!.Count == 0)
                        {
                            pending[peer] = null;
                            next[peer]++;
                        }
                    }
                    if (pending[s] is { Count: > 0 }) continue;
                    pending[s] = null;
                }
                next[s]++;
                progress = true;
            }
            if (done) break;
            Assert.True(progress, $"{kind} p={p} m={m} deadlocks: stages wait at " +
                string.Join(", ", Enumerable.Range(0, p).Select(s => next[s] < plans[s].Length ? $"{s}:{plans[s][next[s]]}" : $"{s}:done")));
        }
        for (int s = 0; s < p; s++)
            for (int i = 0; i < m; i++)
                Assert.True(forwarded[s, i] && backwarded[s, i], $"stage {s}: micro-batch {i} not run both ways");
        return peak;
    }
}
