namespace NativeParallel.Kernels.Ops;

/// <summary>AdamW hyperparameters, as torch.optim.AdamW names them (lr, betas, eps, weight_decay).</summary>
public readonly record struct AdamWSettings(float LearningRate, float Beta1, float Beta2, float Eps, float WeightDecay);
