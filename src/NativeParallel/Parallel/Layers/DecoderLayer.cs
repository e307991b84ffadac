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

    public void Dispose()
    {
        inputNorm.Dispose();
        attention.Dispose();
        postNorm.Dispose();
        feedForward.Dispose();
    }
}
