using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// Grouped-query self-attention over this rank's heads: q, k and v column-parallel (a block of heads), RoPE at the
/// tokens' positions, causal attention, and o row-parallel, whose partial sums leave the TP region.
/// Inference appends the new keys and values to the request's cache (gathered from every SP rank when the prompt is
/// token-split) and attends over the cache (the decode kernel for one token). Training attends within each batch
/// row, keeps what backward reads (<see cref="AttentionActivations"/>) and accumulates the weights' gradients.
/// </summary>
internal sealed class AttentionLayer(IDevice device, LayerWeight q, LayerWeight k, LayerWeight v, LayerWeight o) : IDisposable
{
    public long WeightBytes => q.Bytes + k.Bytes + v.Bytes + o.Bytes;

    /// <summary>x += attention(normed) for the pass's tokens, reading and extending <paramref name="cache"/>.</summary>
    public void Forward(ForwardPass pass, Tensor normed, (Tensor K, Tensor V) cache, Tensor x)
    {
        var kernels = device.Kernels;
        var c = pass.Config;
        var p = pass.Layout;
        int d = c.HeadDim, kvd = p.KvHeads * d, tokens = pass.RegionTokens, start = pass.Start, total = pass.Total;
        var input = pass.Enter(normed);
        kernels.Matmul(input, q.Value, pass.Query);
        kernels.Matmul(input, k.Value, pass.NewKeys);
        kernels.Matmul(input, v.Value, pass.NewValues);
        kernels.Rope(pass.Query.View(tokens, p.QueryHeads, d), pass.Positions, c.RopeTheta);
        kernels.Rope(pass.NewKeys.View(tokens, p.KvHeads, d), pass.Positions, c.RopeTheta);
        var keyRows = cache.K.Narrow(1, start, total).View(total, kvd);
        var valueRows = cache.V.Narrow(1, start, total).View(total, kvd);
        if (pass.TokenSplit)
        {
            // Every rank needs every token's keys and values: gather the slices straight into the cache.
            p.Sp.AllGather(pass.NewKeys, keyRows);
            p.Sp.AllGather(pass.NewValues, valueRows);
        }
        else
        {
            pass.NewKeys.CopyTo(keyRows);
            pass.NewValues.CopyTo(valueRows);
        }
        float scale = 1f / MathF.Sqrt(d);
        if (tokens == 1 && start > 0)
            kernels.AttentionDecode(pass.Query.View(1, p.QueryHeads, d), cache.K, cache.V, pass.Lengths, pass.Attention.View(1, p.QueryHeads, d), scale);
        else
            kernels.AttentionPrefill(pass.Query.View(1, tokens, p.QueryHeads, d), cache.K.Narrow(1, 0, start + total), cache.V.Narrow(1, 0, start + total),
                pass.Attention.View(1, tokens, p.QueryHeads, d), start + pass.RegionOffset, scale);
        kernels.Matmul(pass.Attention, o.Value, pass.Partial);
        kernels.Add(x, pass.LeavePartial(), x); // row-parallel o_proj: partial sums over heads
    }

    /// <summary>Buffers for what this layer's backward reads, one micro-batch's worth.</summary>
    public static AttentionActivations Keep(TrainingPass pass)
    {
        int n = pass.Tokens, d = pass.Config.HeadDim, qd = pass.QueryHeads * d, kvd = pass.KvHeads * d;
        Tensor A(int width) => pass.Allocate(pass.DType, [n, width]);
        return new AttentionActivations(A(qd), A(kvd), A(kvd), A(qd), pass.Allocate(DType.F32, [pass.Batch, pass.QueryHeads, pass.Sequence]));
    }

    /// <summary>Training: q, k, v, RoPE and attention of the residual rows <paramref name="normed"/>, kept in <paramref name="a"/>.</summary>
    public void Attend(TrainingPass pass, Tensor normed, AttentionActivations a)
    {
        var kernels = device.Kernels;
        int b = pass.Batch, t = pass.Sequence, hq = pass.QueryHeads, hkv = pass.KvHeads, d = pass.Config.HeadDim;
        var input = pass.Enter(normed);
        kernels.Matmul(input, q.Value, a.Q);
        kernels.Matmul(input, k.Value, a.K);
        kernels.Matmul(input, v.Value, a.V);
        kernels.Rope(a.Q.View(pass.Tokens, hq, d), pass.Positions, pass.Config.RopeTheta);
        kernels.Rope(a.K.View(pass.Tokens, hkv, d), pass.Positions, pass.Config.RopeTheta);
        AttentionTraining.Forward(a.Q.View(b, t, hq, d), a.K.View(b, t, hkv, d), a.V.View(b, t, hkv, d), a.Output.View(b, t, hq, d), a.Lse,
            1f / MathF.Sqrt(d));
    }

    /// <summary>Training: output = residual + o(attention), the row-parallel partial sums leaving the region.</summary>
    public void Project(TrainingPass pass, AttentionActivations a, Tensor residual, Tensor output)
    {
        var kernels = device.Kernels;
        kernels.Matmul(a.Output, o.Value, pass.Projected);
        kernels.Add(residual, pass.Leave(pass.Projected), output);
    }

    /// <summary>
    /// Backward from ∂loss/∂(the block's output) in <see cref="TrainingPass.Dx"/>: accumulates the q, k, v and o
    /// gradients and returns ∂loss/∂<paramref name="normed"/> (this rank's residual rows, summed over the group).
    /// </summary>
    public Tensor Backward(TrainingPass pass, Tensor normed, AttentionActivations a)
    {
        var kernels = device.Kernels;
        int b = pass.Batch, t = pass.Sequence, hq = pass.QueryHeads, hkv = pass.KvHeads, d = pass.Config.HeadDim;
        var dOutput = pass.Enter(pass.Dx);
        MatmulBackward.InputGrad(dOutput, o.Value, pass.DAttention);
        MatmulBackward.WeightGrad(dOutput, a.Output, o.Gradient, accumulate: true);
        AttentionTraining.Backward(a.Q.View(b, t, hq, d), a.K.View(b, t, hkv, d), a.V.View(b, t, hkv, d), a.Output.View(b, t, hq, d), a.Lse,
            pass.DAttention.View(b, t, hq, d), pass.DQ.View(b, t, hq, d), pass.DK.View(b, t, hkv, d), pass.DV.View(b, t, hkv, d), 1f / MathF.Sqrt(d));
        RopeBackward.Run(pass.DQ.View(pass.Tokens, hq, d), pass.Positions, pass.Config.RopeTheta);
        RopeBackward.Run(pass.DK.View(pass.Tokens, hkv, d), pass.Positions, pass.Config.RopeTheta);
        MatmulBackward.InputGrad(pass.DQ, q.Value, pass.DNormed);
        MatmulBackward.InputGrad(pass.DK, k.Value, pass.DNormed2);
        kernels.Add(pass.DNormed, pass.DNormed2, pass.DNormed);
        MatmulBackward.InputGrad(pass.DV, v.Value, pass.DNormed2);
        kernels.Add(pass.DNormed, pass.DNormed2, pass.DNormed);
        var dNormed = pass.Leave(pass.DNormed);  // column-parallel q/k/v: each rank's share of ∂/∂normed
        var input = pass.Enter(normed);
        MatmulBackward.WeightGrad(pass.DQ, input, q.Gradient, accumulate: true);
        MatmulBackward.WeightGrad(pass.DK, input, k.Gradient, accumulate: true);
        MatmulBackward.WeightGrad(pass.DV, input, v.Gradient, accumulate: true);
        return dNormed;
    }

    public void Dispose()
    {
        q.Dispose();
        k.Dispose();
        v.Dispose();
        o.Dispose();
    }
}

/// <summary>What attention's backward reads: q and k after RoPE, v, the attention output and its row log-sum-exp (f32, (B, heads, T)).</summary>
internal sealed record AttentionActivations(Tensor Q, Tensor K, Tensor V, Tensor Output, Tensor Lse);
