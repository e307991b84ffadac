namespace NativeParallel.Tests.Kernels.Ops;

/// <summary>
/// Central finite differences in float64: the independent check of every backward reference. A scalar loss
/// L = Σ c·y (c random, the upstream gradient) is differentiated numerically at the reference's own input point.
/// </summary>
internal static class FiniteDifference
{
    /// <summary>∂loss/∂x[i] for every i, by (loss(x + h·eᵢ) − loss(x − h·eᵢ)) / 2h; x is restored.</summary>
    public static double[] Gradient(Func<double[], double> loss, double[] x, double h = 1e-5)
    {
        var gradient = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double saved = x[i];
            x[i] = saved + h;
            double plus = loss(x);
            x[i] = saved - h;
            double minus = loss(x);
            x[i] = saved;
            gradient[i] = (plus - minus) / (2 * h);
        }
        return gradient;
    }

    /// <summary>Σ c[i]·y[i].</summary>
    public static double Dot(float[] c, double[] y)
    {
        double sum = 0;
        for (int i = 0; i < y.Length; i++) sum += c[i] * y[i];
        return sum;
    }

    /// <summary>‖a − b‖ / ‖b‖.</summary>
    public static double RelativeError(double[] a, double[] b)
    {
        Assert.Equal(b.Length, a.Length);
        double diff = 0, norm = 0;
        for (int i = 0; i < a.Length; i++)
        {
            diff += (a[i] - b[i]) * (a[i] - b[i]);
            norm += b[i] * b[i];
        }
        return norm == 0 ? Math.Sqrt(diff) : Math.Sqrt(diff / norm);
    }

    /// <summary>Seeded uniform floats in [lo, hi).</summary>
    public static float[] Random(int seed, int count, float lo = -1f, float hi = 1f)
    {
        var rng = new System.Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = lo + (float)rng.NextDouble() * (hi - lo);
        return values;
    }

    /// <summary>Widened copy.</summary>
    public static double[] Wide(float[] x) => Array.ConvertAll(x, v => (double)v);

    /// <summary>Asserts the analytic gradient matches the numerical one to <paramref name="bound"/> (relative, L2).</summary>
    public static void AssertClose(double[] analytic, double[] numerical, string what, double bound = 1e-7)
    {
        double error = RelativeError(analytic, numerical);
        Assert.True(error <= bound, $"{what}: reference gradient differs from finite differences by {error:E2} (bound {bound:E0})");
    }
}
