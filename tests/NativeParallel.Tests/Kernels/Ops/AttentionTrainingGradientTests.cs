using NativeParallel.Kernels.Ops;
using static NativeParallel.Tests.Kernels.Ops.FiniteDifference;

namespace NativeParallel.Tests.Kernels.Ops;

public sealed class AttentionTrainingGradientTests
{
    private const int B = 1, T = 5, Hq = 4, Hkv = 2, D = 6;
    private static readonly float Scale = 1f / MathF.Sqrt(D);

    /// <summary>Causal grouped-query attention in float64 over float64 inputs (independent of the op's references).</summary>
    private static double[] Forward(double[] q, double[] k, double[] v)
    {
        var output = new double[B * T * Hq * D];
        var scores = new double[T];
        for (int b = 0; b < B; b++)
            for (int i = 0; i < T; i++)
                for (int h = 0; h < Hq; h++)
                {
                    int g = h / (Hq / Hkv), qRow = ((b * T + i) * Hq + h) * D;
                    double max = double.NegativeInfinity, sum = 0;
                    for (int j = 0; j <= i; j++)
                    {
                        int kRow = ((b * T + j) * Hkv + g) * D;
                        double dot = 0;
                        for (int c = 0; c < D; c++) dot += q[qRow + c] * k[kRow + c];
                        scores[j] = dot * Scale;
                        max = Math.Max(max, scores[j]);
                    }
                    for (int j = 0; j <= i; j++) sum += scores[j] = Math.Exp(scores[j] - max);
                    for (int j = 0; j <= i; j++)
                    {
                        int vRow = ((b * T + j) * Hkv + g) * D;
                        for (int c = 0; c < D; c++) output[qRow + c] += scores[j] / sum * v[vRow + c];
                    }
                }
        return output;
    }

    [Fact]
    public void BackwardReferenceMatchesFiniteDifferences()
    {
        var q = Random(1, B * T * Hq * D, -2f, 2f);
        var k = Random(2, B * T * Hkv * D, -2f, 2f);
        var v = Random(3, B * T * Hkv * D);
        var c = Random(4, B * T * Hq * D);
        var (dq, dk, dv) = AttentionTraining.ReferenceBackward(q, k, v, c, B, T, Hq, Hkv, D, Scale);

        double[] q0 = Wide(q), k0 = Wide(k), v0 = Wide(v);
        AssertClose(dq, Gradient(x => Dot(c, Forward(x, k0, v0)), q0), "dq");
        AssertClose(dk, Gradient(x => Dot(c, Forward(q0, x, v0)), k0), "dk");
        AssertClose(dv, Gradient(x => Dot(c, Forward(q0, k0, x)), v0), "dv");
    }

    [Fact]
    public void ForwardReferenceMatchesPrefillAndDefinesLse()
    {
        var q = Random(5, B * T * Hq * D, -2f, 2f);
        var k = Random(6, B * T * Hkv * D, -2f, 2f);
        var v = Random(7, B * T * Hkv * D);
        var (output, lse) = AttentionTraining.ReferenceForward(q, k, v, B, T, Hq, Hkv, D, Scale);
        var prefill = AttentionPrefill.Reference(q, k, v, B, T, T, Hq, Hkv, D, 0, Scale);
        Assert.True(RelativeError(output, prefill) <= 1e-12, $"output differs from attention_prefill by {RelativeError(output, prefill):E2}");

        // lse_i = log Σ_{j≤i} exp(scale·q_i·k_j), directly.
        for (int i = 0; i < T; i++)
            for (int h = 0; h < Hq; h++)
            {
                double sum = 0;
                for (int j = 0; j <= i; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < D; c++) dot += (double)q[(i * Hq + h) * D + c] * k[(j * Hkv + h / (Hq / Hkv)) * D + c];
                    sum += Math.Exp(Scale * dot);
                }
                Assert.Equal(Math.Log(sum), lse[h * T + i], 12);
            }
    }
}
