using System.Text.RegularExpressions;
using NativeParallel.Comm;
using NativeParallel.Diagnostics;

namespace NativeParallel.Tests.Comm;

/// <summary>The one-shot all_reduce limit the docs state is the one the code uses.</summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class OneShotDefaultTests
{
    [Fact]
    public void TheDocumentedOneShotLimitIsTheDefault()
    {
        string? previous = Environment.GetEnvironmentVariable("NATIVEPARALLEL_ONESHOT_BYTES");
        Environment.SetEnvironmentVariable("NATIVEPARALLEL_ONESHOT_BYTES", null);
        try
        {
            long bytes = CommTunables.OneShotBytes;
            string meaning = Tunables.All.Single(t => t.Name == "NATIVEPARALLEL_ONESHOT_BYTES").Meaning;
            Assert.Contains($"(default {bytes})", meaning);

            string? root = null;
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null && root is null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "README.md")) && Directory.Exists(Path.Combine(dir.FullName, "docs"))) root = dir.FullName;
            if (root is null) Assert.Skip("no README.md above the test binaries");
            string kib = $"{bytes / 1024} KiB";
            foreach (string doc in new[] { "README.md", Path.Combine("docs", "benchmarks.md") })
            {
                var stated = Regex.Matches(File.ReadAllText(Path.Combine(root, doc)), @"one[- ]shot[^.|]*?up to (\d+ KiB)", RegexOptions.IgnoreCase);
                Assert.NotEmpty(stated);
                Assert.All(stated, m => Assert.Equal(kib, m.Groups[1].Value));
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable("NATIVEPARALLEL_ONESHOT_BYTES", previous);
        }
    }
}
