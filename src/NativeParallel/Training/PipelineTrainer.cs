using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// Pipeline-parallel training with the GPipe schedule: rank r of the pipeline group holds stage r (a contiguous block
/// of layers; the embedding on the first stage, the final norm, LM head and loss on the last). The batch is cut into
/// micro-batches; every micro-batch goes forward through the stages (activations sent to the next stage), then every
/// micro-batch comes back in reverse order (gradients sent to the previous stage), gradients accumulating; then one
/// gradient norm over all stages, clipping and AdamW, each stage updating its own layers. As in the GPipe paper,
/// a stage keeps only each micro-batch's input and re-materialises the micro-batch's activations before its backward.
/// The idle fraction (the bubble) is (p − 1)/(m + p − 1).
/// </summary>
public sealed class PipelineTrainer : IDisposable
{
    private const int BackwardTag = 1 << 20;
    private readonly ProcessGroup _group;
    private readonly IDevice _device;
    private readonly int _batch, _sequence, _microBatches, _rows;
    private readonly Tensor[] _stageInputs;
    private readonly Tensor? _outputGrad;
    private readonly Tensor _scalar, _norm;
    private readonly int[] _inputs, _targets;

    /// <summary>Stage <c>group.Rank</c> of a pipeline over <c>group.Size</c> stages.</summary>
    public PipelineTrainer(ProcessGroup group, IDevice device, LlamaWeights weights, int batch, int sequence, int microBatches,
        bool recompute = false, DType dtype = DType.F32)
    {
        if (microBatches < 1 || batch % microBatches != 0)
            throw new ArgumentException($"the GPipe schedule cuts the batch's rows into micro-batches: --batch {batch} is not a multiple of {microBatches} micro-batches");
        _group = group;
        _device = device;
        _batch = batch;
        _sequence = sequence;
        _microBatches = microBatches;
        _rows = batch / microBatches;
        var stage = PipelineStage.Of(group.Rank, group.Size, weights.Config.Layers);
        Trainer = new LlamaTrainer(device, weights, _rows, sequence, recompute, dtype, lossTokens: batch * sequence, stage: stage);
        int tokens = _rows * sequence, h = weights.Config.Hidden;
        _stageInputs = stage.IsFirst ? [] : Enumerable.Range(0, microBatches).Select(_ => Tensor.Empty(device, dtype, tokens, h)).ToArray();
        _outputGrad = stage.IsLast ? null : Tensor.Empty(device, dtype, tokens, h);
        _scalar = Tensor.Empty(CpuDevice.Instance, DType.F32, 1);
        _norm = Tensor.Empty(device, DType.F32, 1);
        _inputs = new int[tokens];
        _targets = new int[tokens];
    }

    /// <summary>This rank's stage.</summary>
    public LlamaTrainer Trainer { get; }

    /// <summary>GPipe's idle fraction per step: (p − 1)/(m + p − 1).</summary>
    public double Bubble => (double)(_group.Size - 1) / (_microBatches + _group.Size - 1);

    /// <summary>One step on the global batch (B·T inputs and targets, the same on every stage): the GPipe schedule, then the update. Returns the batch's loss on every stage.</summary>
    public StepResult Step(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, AdamWSettings settings, int step, float gradClip)
    {
        int n = _batch * _sequence, perMicroBatch = _rows * _sequence;
        if (inputs.Length != n || targets.Length != n)
            throw new ArgumentException($"a batch is B·T = {_batch}·{_sequence} = {n} inputs and targets; got {inputs.Length} and {targets.Length}");
        var stage = Trainer.Stage;
        int previous = _group.Rank - 1, next = _group.Rank + 1;
        double loss = 0;
        // Fill: every micro-batch forward, activations to the next stage.
        for (int i = 0; i < _microBatches; i++)
        {
            Load(inputs, targets, i, perMicroBatch);
            if (!stage.IsFirst) Receive(_stageInputs[i], previous, i);
            loss += Trainer.Forward(_inputs, _targets, stage.IsFirst ? null : _stageInputs[i]);
            if (!stage.IsLast) Send(Trainer.StageOutput, next, i);
        }
        // Drain: micro-batches back in reverse order, gradients to the previous stage. The last micro-batch's
        // activations are still in place; the others are re-materialised from their saved stage input.
        for (int i = _microBatches - 1; i >= 0; i--)
        {
            Load(inputs, targets, i, perMicroBatch);
            if (i != _microBatches - 1) Trainer.Forward(_inputs, _targets, stage.IsFirst ? null : _stageInputs[i]);
            if (!stage.IsLast) Receive(_outputGrad!, next, BackwardTag + i);
            Trainer.Backward(null, _outputGrad, accumulate: i != _microBatches - 1);
            if (!stage.IsFirst) Send(Trainer.StageInputGrad, previous, BackwardTag + i);
        }
        // The loss lives on the last stage: every stage adds its share (0 elsewhere).
        _scalar.CopyFromHost(BitConverter.GetBytes((float)loss));
        _group.AllReduce(_scalar);
        loss = _scalar.ToFloats()[0];
        // The stages hold disjoint parameters: the global norm is the root of the summed squares.
        _norm.FillBytes(0);
        SumOfSquares.Accumulate(Trainer.Gradients, _norm);
        TrainingSteps.FinishQueuedWork(_device);
        _group.AllReduce(_norm);
        double norm = Math.Sqrt(_norm.ToFloats()[0]);
        float coefficient = TrainingSteps.ClipCoefficient(norm, gradClip);
        Trainer.Update(settings, step, coefficient);
        return new StepResult(loss, norm, coefficient);
    }

    /// <summary>The batch's mean loss without an update (validation): the forward fill alone.</summary>
    public double Evaluate(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets)
    {
        int perMicroBatch = _rows * _sequence;
        var stage = Trainer.Stage;
        double loss = 0;
        for (int i = 0; i < _microBatches; i++)
        {
            Load(inputs, targets, i, perMicroBatch);
            if (!stage.IsFirst) Receive(_stageInputs[i], _group.Rank - 1, i);
            loss += Trainer.Forward(_inputs, _targets, stage.IsFirst ? null : _stageInputs[i]);
            if (!stage.IsLast) Send(Trainer.StageOutput, _group.Rank + 1, i);
        }
        _scalar.CopyFromHost(BitConverter.GetBytes((float)loss));
        _group.AllReduce(_scalar);
        return _scalar.ToFloats()[0];
    }

    private void Load(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int microBatch, int perMicroBatch)
    {
        inputs.Slice(microBatch * perMicroBatch, perMicroBatch).CopyTo(_inputs);
        targets.Slice(microBatch * perMicroBatch, perMicroBatch).CopyTo(_targets);
    }

    private void Send(Tensor tensor, int peer, int tag)
    {
        TrainingSteps.FinishQueuedWork(_device);
        _group.Send(tensor, peer, tag);
    }

    private void Receive(Tensor tensor, int peer, int tag) => _group.Recv(tensor, peer, tag);

    /// <inheritdoc/>
    public void Dispose()
    {
        Trainer.Dispose();
        foreach (var t in _stageInputs) t.Dispose();
        _outputGrad?.Dispose();
        _scalar.Dispose();
        _norm.Dispose();
    }
}
