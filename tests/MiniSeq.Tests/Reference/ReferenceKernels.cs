// Scalar, obviously-correct reference kernels in double precision: the test oracle for the SIMD kernels and the
// forward functions that finite-difference checks differentiate. Written for clarity, not speed; managed arrays only.
// Deliberately not: used by the model (the SIMD kernels are the implementation).
namespace MiniSeq.Kernels.Reference;

/// <summary>Double-precision reference implementations of the element-wise, row-wise and optimizer kernels.</summary>
internal static class ReferenceKernels
{
    // ---- RMSNorm ------------------------------------------------------------------------------------------------

    /// <summary>out = w·x/√(mean x² + eps) per row; rstd (rows).</summary>
    public static double[] RmsNormForward(double[] x, double[] weight, int rows, int dim, double eps, out double[] rstd)
    {
        var output = new double[rows * dim];
        rstd = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double ss = 0;
            for (int i = 0; i < dim; i++)
            {
                ss += x[(r * dim) + i] * x[(r * dim) + i];
            }

            rstd[r] = 1.0 / Math.Sqrt((ss / dim) + eps);
            for (int i = 0; i < dim; i++)
            {
                output[(r * dim) + i] = weight[i] * x[(r * dim) + i] * rstd[r];
            }
        }

        return output;
    }

    /// <summary>Gradients of Σ dOutput·RmsNormForward(x, weight) with respect to x and weight (not accumulated).</summary>
    public static (double[] Dx, double[] DWeight) RmsNormBackward(double[] dOutput, double[] x, double[] weight, int rows, int dim, double eps)
    {
        RmsNormForward(x, weight, rows, dim, eps, out double[] rstd);
        var dx = new double[rows * dim];
        var dw = new double[dim];
        for (int r = 0; r < rows; r++)
        {
            double dot = 0;
            for (int i = 0; i < dim; i++)
            {
                dot += dOutput[(r * dim) + i] * weight[i] * x[(r * dim) + i] * rstd[r];
            }

            for (int i = 0; i < dim; i++)
            {
                double xhat = x[(r * dim) + i] * rstd[r];
                dx[(r * dim) + i] = rstd[r] * ((weight[i] * dOutput[(r * dim) + i]) - (xhat * dot / dim));
                dw[i] += dOutput[(r * dim) + i] * xhat;
            }
        }

        return (dx, dw);
    }

    // ---- RoPE ---------------------------------------------------------------------------------------------------

    /// <summary>HF inv_freq and cos/sin tables (MaxPositions, D/2), with the float32 roundings of the PyTorch code.</summary>
    public static (float[] Cos, float[] Sin) RopeTable(int headDim, double theta, int maxPositions)
    {
        int half = headDim / 2;
        var cos = new float[maxPositions * half];
        var sin = new float[maxPositions * half];
        for (int j = 0; j < half; j++)
        {
            float exponent = (float)(2 * j) / (float)headDim;
            float invFreq = 1f / (float)Math.Pow((float)theta, exponent);
            for (int p = 0; p < maxPositions; p++)
            {
                float angle = (float)p * invFreq;
                cos[(p * half) + j] = (float)Math.Cos(angle);
                sin[(p * half) + j] = (float)Math.Sin(angle);
            }
        }

        return (cos, sin);
    }

    /// <summary>x·cos + rotate_half(x)·sin per head, rotate_half(x) = cat(−x2, x1), cos/sin repeated over both halves.</summary>
    public static double[] RopeForward(double[] x, int rows, int seqLen, int heads, int headDim, float[] cos, float[] sin, int positionOffset, bool transposed = false)
    {
        int half = headDim / 2;
        var output = new double[x.Length];
        var rotated = new double[headDim];
        for (int r = 0; r < rows; r++)
        {
            int p = positionOffset + (r % seqLen);
            for (int h = 0; h < heads; h++)
            {
                int o = ((r * heads) + h) * headDim;
                for (int i = 0; i < half; i++)
                {
                    rotated[i] = -x[o + half + i];
                    rotated[half + i] = x[o + i];
                }

                for (int i = 0; i < headDim; i++)
                {
                    double c = cos[(p * half) + (i % half)];
                    double s = sin[(p * half) + (i % half)] * (transposed ? -1 : 1);
                    output[o + i] = (x[o + i] * c) + (rotated[i] * s);
                }
            }
        }

        return output;
    }

    // ---- SwiGLU -------------------------------------------------------------------------------------------------

    /// <summary>silu(g) = g/(1 + e^−g).</summary>
    public static double Silu(double g) => g / (1 + Math.Exp(-g));

    /// <summary>silu'(g).</summary>
    public static double SiluGrad(double g)
    {
        double s = 1 / (1 + Math.Exp(-g));
        return s * (1 + (g * (1 - s)));
    }

    // ---- Cross-entropy ------------------------------------------------------------------------------------------

    /// <summary>One row's loss (PyTorch semantics, see CrossEntropy) and its gradient with respect to the raw logits.</summary>
    public static double CrossEntropyRow(double[] logits, int label, double smoothing, double zLossWeight, double softCap, out double[] gradient)
    {
        int n = logits.Length;
        gradient = new double[n];
        if (label == CrossEntropy.IgnoreIndex)
        {
            return 0;
        }

        var z = new double[n];
        var dzdLogit = new double[n];
        for (int j = 0; j < n; j++)
        {
            if (softCap > 0)
            {
                double t = Math.Tanh(logits[j] / softCap);
                z[j] = softCap * t;
                dzdLogit[j] = 1 - (t * t);
            }
            else
            {
                z[j] = logits[j];
                dzdLogit[j] = 1;
            }
        }

        double max = double.NegativeInfinity;
        double sumZ = 0;
        for (int j = 0; j < n; j++)
        {
            max = Math.Max(max, z[j]);
            sumZ += z[j];
        }

        double s = 0;
        for (int j = 0; j < n; j++)
        {
            s += Math.Exp(z[j] - max);
        }

        double lse = max + Math.Log(s);
        for (int j = 0; j < n; j++)
        {
            double p = Math.Exp(z[j] - lse);
            double dz = ((1 - smoothing) * (p - (j == label ? 1 : 0))) + (smoothing * (p - (1.0 / n))) + (2 * zLossWeight * lse * p);
            gradient[j] = dz * dzdLogit[j];
        }

        return ((1 - smoothing) * (lse - z[label])) + (smoothing * (lse - (sumZ / n))) + (zLossWeight * lse * lse);
    }

    // ---- Optimizers ---------------------------------------------------------------------------------------------

    /// <summary>One AdamW step in double (torch.optim.AdamW formulas, no intermediate float rounding).</summary>
    public static void AdamWStep(double[] p, double[] g, double[] m, double[] v, double lr, double beta1, double beta2, double eps, double weightDecay, int step)
    {
        double bc1 = 1 - Math.Pow(beta1, step);
        double bc2 = 1 - Math.Pow(beta2, step);
        for (int i = 0; i < p.Length; i++)
        {
            p[i] *= 1 - (lr * weightDecay);
            m[i] = (beta1 * m[i]) + ((1 - beta1) * g[i]);
            v[i] = (beta2 * v[i]) + ((1 - beta2) * g[i] * g[i]);
            double denom = (Math.Sqrt(v[i]) / Math.Sqrt(bc2)) + eps;
            p[i] -= lr / bc1 * m[i] / denom;
        }
    }

    /// <summary>One SGD step in double (torch.optim.SGD with dampening and Nesterov); momentum may be null when μ = 0.</summary>
    public static void SgdStep(double[] p, double[] g, double[]? momentum, double lr, double mu, double dampening, bool nesterov, double weightDecay, int step)
    {
        for (int i = 0; i < p.Length; i++)
        {
            double d = g[i] + (weightDecay * p[i]);
            if (mu != 0)
            {
                momentum![i] = step == 1 ? d : (mu * momentum[i]) + ((1 - dampening) * d);
                d = nesterov ? d + (mu * momentum[i]) : momentum[i];
            }

            p[i] -= lr * d;
        }
    }

    /// <summary>One Lion step in double (lion-pytorch's update_fn); sign(0) = 0 as torch.sign.</summary>
    public static void LionStep(double[] p, double[] g, double[] m, double lr, double beta1, double beta2, double weightDecay)
    {
        for (int i = 0; i < p.Length; i++)
        {
            p[i] *= 1 - (lr * weightDecay);
            p[i] -= lr * Math.Sign((beta1 * m[i]) + ((1 - beta1) * g[i]));
            m[i] = (beta2 * m[i]) + ((1 - beta2) * g[i]);
        }
    }

    /// <summary>One LAMB step in double over one tensor (the paper's trust ratio on every tensor, Adam's bias
    /// correction, ε added to √v̂): r = m̂/(√v̂ + ε) + wd·p; p −= lr·(‖p‖/‖r‖)·r, the ratio 1 when a norm is 0.</summary>
    public static void LambStep(double[] p, double[] g, double[] m, double[] v, double lr, double beta1, double beta2, double eps, double weightDecay, int step)
    {
        double bc1 = 1 - Math.Pow(beta1, step);
        double bc2 = 1 - Math.Pow(beta2, step);
        var r = new double[p.Length];
        double rr = 0, pp = 0;
        for (int i = 0; i < p.Length; i++)
        {
            m[i] = (beta1 * m[i]) + ((1 - beta1) * g[i]);
            v[i] = (beta2 * v[i]) + ((1 - beta2) * g[i] * g[i]);
            r[i] = (m[i] / bc1 / (Math.Sqrt(v[i] / bc2) + eps)) + (weightDecay * p[i]);
            rr += r[i] * r[i];
            pp += p[i] * p[i];
        }

        double trust = pp > 0 && rr > 0 ? Math.Sqrt(pp) / Math.Sqrt(rr) : 1;
        for (int i = 0; i < p.Length; i++)
        {
            p[i] -= lr * trust * r[i];
        }
    }
}
