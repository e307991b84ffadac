namespace NativeParallel.Training;

/// <summary>What a pipeline stage does next. Sends and receives are blocking; the paired forms do both at once, so two neighbours exchanging in opposite directions never wait on each other.</summary>
public enum PipelineOp
{
    /// <summary>Receive micro-batch <see cref="PipelineAction.MicroBatch"/>'s activations from the previous stage.</summary>
    RecvActivation,
    /// <summary>Run forward on the micro-batch.</summary>
    Forward,
    /// <summary>Send the micro-batch's output to the next stage.</summary>
    SendActivation,
    /// <summary>Receive the gradient of the micro-batch's output from the next stage.</summary>
    RecvGradient,
    /// <summary>Run backward on the micro-batch.</summary>
    Backward,
    /// <summary>Send the gradient of the micro-batch's input to the previous stage.</summary>
    SendGradient,
    /// <summary>Send micro-batch <see cref="PipelineAction.MicroBatch"/>'s output to the next stage while receiving the output gradient of micro-batch <see cref="PipelineAction.Other"/> from it.</summary>
    SendActivationRecvGradient,
    /// <summary>Send micro-batch <see cref="PipelineAction.MicroBatch"/>'s input gradient to the previous stage while receiving micro-batch <see cref="PipelineAction.Other"/>'s activations from it.</summary>
    SendGradientRecvActivation,
}

/// <summary>One step of a stage's schedule. <see cref="Other"/> is the micro-batch received by a paired send-and-receive, −1 otherwise.</summary>
public readonly record struct PipelineAction(PipelineOp Op, int MicroBatch, int Other = -1)
{
    /// <inheritdoc/>
    public override string ToString() => Other < 0 ? $"{Op}({MicroBatch})" : $"{Op}({MicroBatch}, {Other})";
}

/// <summary>The two pipeline schedules.</summary>
public enum PipelineScheduleKind
{
    /// <summary>GPipe: every micro-batch forward, then every micro-batch backward; holds all m micro-batches' activations.</summary>
    GPipe,
    /// <summary>1F1B (PipeDream-flush, Megatron's default): a warm-up of forwards, then one forward and one backward in turn, then the remaining backwards; stage s holds at most p − s micro-batches.</summary>
    OneForwardOneBackward,
}

/// <summary>
/// Pipeline schedules written as data: the list of forward, backward, send and receive actions each stage runs, in
/// order. One runner executes any of them (<see cref="ParallelTrainer"/>); tests check every schedule for
/// deadlock-freedom and dependencies by simulating the stages together.
/// </summary>
public static class PipelineSchedule
{
    /// <summary>Parses <c>gpipe</c> or <c>1f1b</c>.</summary>
    public static PipelineScheduleKind Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "gpipe" => PipelineScheduleKind.GPipe,
        "1f1b" => PipelineScheduleKind.OneForwardOneBackward,
        _ => throw new ArgumentException($"unknown pipeline schedule '{text}' (gpipe or 1f1b)"),
    };

    /// <summary>The short name: <c>gpipe</c> or <c>1f1b</c>.</summary>
    public static string Name(this PipelineScheduleKind kind) => kind == PipelineScheduleKind.GPipe ? "gpipe" : "1f1b";

    /// <summary>How many micro-batches' activations stage <paramref name="stage"/> holds at once under the schedule.</summary>
    public static int InFlight(PipelineScheduleKind kind, int stages, int stage, int microBatches) =>
        kind == PipelineScheduleKind.GPipe ? microBatches : Math.Min(microBatches, stages - stage);

    /// <summary>The idle fraction of both schedules: (p − 1)/(m + p − 1).</summary>
    public static double Bubble(int stages, int microBatches) => (stages - 1.0) / (microBatches + stages - 1);

    /// <summary>Stage <paramref name="stage"/>'s actions for one training step of <paramref name="microBatches"/> micro-batches.</summary>
    public static PipelineAction[] Training(PipelineScheduleKind kind, int stages, int stage, int microBatches)
    {
        Check(stages, stage, microBatches);
        var plan = new Plan(stage == 0, stage == stages - 1);
        if (kind == PipelineScheduleKind.GPipe)
        {
            for (int i = 0; i < microBatches; i++) plan.ForwardWithTransfers(i);
            // Backwards in reverse: the last micro-batch's activations are the freshest.
            for (int i = microBatches - 1; i >= 0; i--) plan.BackwardWithTransfers(i);
            return plan.Actions.ToArray();
        }
        // 1F1B as Megatron runs it: stage s warms up with p − s − 1 forwards; then each forward's output goes to the
        // next stage in the same exchange that brings back the oldest micro-batch's gradient, and each backward's
        // input gradient goes to the previous stage in the same exchange that brings the next micro-batch.
        int warmup = Math.Min(stages - stage - 1, microBatches), steady = microBatches - warmup;
        for (int i = 0; i < warmup; i++) plan.ForwardWithTransfers(i);
        if (steady > 0) plan.ReceiveActivation(warmup);
        for (int j = 0; j < steady; j++)
        {
            int forward = warmup + j;
            plan.Add(PipelineOp.Forward, forward);
            plan.SendActivationReceiveGradient(forward, j);
            plan.Add(PipelineOp.Backward, j);
            if (j == steady - 1) plan.SendGradient(j);
            else plan.SendGradientReceiveActivation(j, forward + 1);
        }
        for (int i = steady; i < microBatches; i++) plan.BackwardWithTransfers(i);
        return plan.Actions.ToArray();
    }

    /// <summary>Stage <paramref name="stage"/>'s actions for a forward pass alone (validation): every micro-batch forward, in order.</summary>
    public static PipelineAction[] ForwardOnly(int stages, int stage, int microBatches)
    {
        Check(stages, stage, microBatches);
        var plan = new Plan(stage == 0, stage == stages - 1);
        for (int i = 0; i < microBatches; i++) plan.ForwardWithTransfers(i);
        return plan.Actions.ToArray();
    }

    private static void Check(int stages, int stage, int microBatches)
    {
        if (stages < 1 || stage < 0 || stage >= stages) throw new ArgumentException($"stage {stage} of {stages} does not exist");
        if (microBatches < 1) throw new ArgumentException($"a pipeline step needs at least one micro-batch, got {microBatches}");
    }

    // Builds one stage's list; transfers with a neighbour the stage does not have (before the first, after the last)
    // are left out, and a paired exchange with one missing half becomes the other half alone.
    private sealed class Plan(bool first, bool last)
    {
        public readonly List<PipelineAction> Actions = [];

        public void Add(PipelineOp op, int microBatch, int other = -1) => Actions.Add(new PipelineAction(op, microBatch, other));

        public void ReceiveActivation(int i)
        {
            if (!first) Add(PipelineOp.RecvActivation, i);
        }

        public void SendGradient(int i)
        {
            if (!first) Add(PipelineOp.SendGradient, i);
        }

        public void ForwardWithTransfers(int i)
        {
            ReceiveActivation(i);
            Add(PipelineOp.Forward, i);
            if (!last) Add(PipelineOp.SendActivation, i);
        }

        public void BackwardWithTransfers(int i)
        {
            if (!last) Add(PipelineOp.RecvGradient, i);
            Add(PipelineOp.Backward, i);
            SendGradient(i);
        }

        public void SendActivationReceiveGradient(int sent, int received)
        {
            if (!last) Add(PipelineOp.SendActivationRecvGradient, sent, received);
        }

        public void SendGradientReceiveActivation(int sent, int received)
        {
            if (!first) Add(PipelineOp.SendGradientRecvActivation, sent, received);
        }
    }
}
