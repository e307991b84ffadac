namespace NativeParallel.Training;

/// <summary>The rules every trainer (single device, data, tensor and pipeline parallel) applies the same way.</summary>
public static class TrainingSteps
{
    /// <summary>
    /// torch.nn.utils.clip_grad_norm_'s scale: min(1, clip / (norm + 1e-6)); <paramref name="gradClip"/> 0 turns clipping off (1).
    /// </summary>
    public static float ClipCoefficient(double norm, float gradClip) =>
        gradClip > 0 ? (float)Math.Min(1.0, gradClip / (norm + 1e-6)) : 1f;
}
