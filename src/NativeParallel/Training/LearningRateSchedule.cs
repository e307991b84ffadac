namespace NativeParallel.Training;

/// <summary>
/// The learning rate of step s (0-based): constant by default; with warmup, linear from lr/W at step 0 up to lr at
/// step W−1 (as llm.c); with cosine, from lr after warmup down to <see cref="MinLearningRate"/> at the last step.
/// </summary>
public sealed record LearningRateSchedule(float LearningRate, int WarmupSteps = 0, bool Cosine = false, float MinLearningRate = 0f, int TotalSteps = 1)
{
    /// <summary>The rate for step <paramref name="step"/> (0-based).</summary>
    public float At(int step)
    {
        if (step < WarmupSteps) return LearningRate * (step + 1) / WarmupSteps;
        if (!Cosine) return LearningRate;
        int span = Math.Max(1, TotalSteps - WarmupSteps - 1);
        double progress = Math.Clamp((double)(step - WarmupSteps) / span, 0, 1);
        return (float)(MinLearningRate + 0.5 * (1 + Math.Cos(Math.PI * progress)) * (LearningRate - MinLearningRate));
    }
}
