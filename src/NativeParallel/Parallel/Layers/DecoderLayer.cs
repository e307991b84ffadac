using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>One pre-norm decoder layer: x += attention(norm(x)); x += ffn(norm(x)).</summary>
internal sealed class DecoderLayer(RmsNormLayer inputNorm, AttentionLayer attention, RmsNormLayer postNorm, IFeedForward feedForward) : IDisposable
{
    public IFeedForward FeedForward => feedForward;

    public long WeightBytes => inputNorm.WeightBytes + attention.WeightBytes + postNorm.WeightBytes + feedForward.WeightBytes;

    public void Forward(ForwardPass pass, Tensor x, (Tensor K, Tensor V) cache)
    {
        inputNorm.Forward(x, pass.Normed);
        attention.Forward(pass, pass.Normed, cache, x);
        postNorm.Forward(x, pass.Normed);
        feedForward.Forward(pass, pass.Normed, x);
    }

    /// <summary>
    /// Buffers for what backward reads, one micro-batch's worth; with <paramref name="shared"/> (recomputation) only
    /// the layer's input and mid-layer residual are its own, the rest is the shared set backward recomputes into.
    /// </summary>
    public DecoderActivations Keep(TrainingPass pass, DecoderActivations? shared = null)
    {
        Tensor Residual() => pass.Allocate(pass.DType, [pass.Rows, pass.Config.Hidden]);
        if (shared is not null) return shared with { Input = Residual(), Mid = Residual() };
        return new DecoderActivations(Residual(), Residual(), AttentionLayer.Keep(pass), Residual(), Residual(), feedForward.Keep(pass));
    }

    /// <summary>
    /// Training forward from <see cref="DecoderActivations.Input"/>: every activation backward reads, the mid-layer
    /// residual and the layer's <paramref name="output"/> (the next layer's input). Recomputation passes no output:
    /// the residual adds are skipped, since input and mid were kept.
    /// </summary>
    public void Forward(TrainingPass pass, DecoderActivations a, Tensor? output)
    {
        inputNorm.Forward(a.Input, a.Normed1);
        attention.Attend(pass, a.Normed1, a.Attention);
        if (output is not null) attention.Project(pass, a.Attention, a.Input, a.Mid);
        postNorm.Forward(a.Mid, a.Normed2);
        feedForward.Activate(pass, a.Normed2, a.FeedForward);
        if (output is not null) feedForward.Project(pass, a.FeedForward, a.Mid, output);
    }

    /// <summary>
    /// Training backward: <see cref="TrainingPass.Dx"/> holds ∂loss/∂(the layer's output) and is left holding
    /// ∂loss/∂(its input); every weight's gradient accumulates.
    /// </summary>
    public void Backward(TrainingPass pass, DecoderActivations a)
    {
        var kernels = pass.Device.Kernels;
        // Feed-forward block: output = mid + ffn(norm(mid)).
        var dNormed2 = feedForward.Backward(pass, a.Normed2, a.FeedForward);
        postNorm.Backward(a.Mid, dNormed2, pass.DTmp);
        kernels.Add(pass.Dx, pass.DTmp, pass.Dx);
        // Attention block: mid = input + attention(norm(input)).
        var dNormed1 = attention.Backward(pass, a.Normed1, a.Attention);
        inputNorm.Backward(a.Input, dNormed1, pass.DTmp);
        kernels.Add(pass.Dx, pass.DTmp, pass.Dx);
    }

    public void Dispose()
    {
        inputNorm.Dispose();
        attention.Dispose();
        postNorm.Dispose();
        feedForward.Dispose();
    }
}

/// <summary>
/// What one decoder layer's backward reads: its input (the residual stream), the normed inputs of both blocks, the
/// mid-layer residual, and each block's own activations.
/// </summary>
internal sealed record DecoderActivations(Tensor Input, Tensor Normed1, AttentionActivations Attention, Tensor Mid, Tensor Normed2, FeedForwardActivations FeedForward);
