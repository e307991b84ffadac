namespace NativeParallel.Cli;

/// <summary>A bad command line: printed with a pointer to --help, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The arguments after the command words: <c>--name value</c>, <c>--name=value</c>, <c>--flag</c>, <c>-x value</c>. Options are
/// declared by the command as it reads them; anything left unread is an error, so typos never pass silently.
/// </summary>
internal sealed class CommandLine
{
    private readonly Dictionary<string, string?> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<string>> _multi = new(StringComparer.Ordinal);

    /// <summary>Parses <paramref name="args"/>; <paramref name="flags"/> are the options that take no value.</summary>
    public CommandLine(IEnumerable<string> args, params string[] flags)
    {
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string arg = list[i];
            // One-letter flags may take one dash, as nccl-tests and launchers spell them (-n 2, -b 8).
            if (arg.Length == 2 && arg[0] == '-' && char.IsLetter(arg[1])) arg = "-" + arg;
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
                throw new UsageException($"unexpected argument '{arg}'");
            string name = arg[2..];
            int eq = name.IndexOf('=');
            if (eq >= 0)
            {
                string given = name[(eq + 1)..];
                name = name[..eq];
                _options[name] = given;
            }
            else if (flags.Contains(name)) _options[name] = null;
            else if (i + 1 < list.Count) _options[name] = list[++i];
            else throw new UsageException($"option --{name} needs a value");
            if (_options[name] is { } value)
            {
                if (!_multi.TryGetValue(name, out var values)) _multi[name] = values = [];
                values.Add(value);
            }
        }
    }

    /// <summary>
    /// The options as given, in their order of first appearance: a flag is true, a value its text, a repeated option
    /// the list of its values (what --json reports as the command's options).
    /// </summary>
    public IReadOnlyList<(string Name, object Value)> Given => _options.Keys
        .Select(name => (name, _multi.TryGetValue(name, out var values) ? values.Count > 1 ? (object)values.ToArray() : values[0] : true))
        .ToList();

    /// <summary>True when --help was given.</summary>
    public bool Help => Flag("help");

    /// <summary>The value of --name, or <paramref name="fallback"/>.</summary>
    public string? Option(string name, string? fallback = null)
    {
        _read.Add(name);
        return _options.TryGetValue(name, out var value) ? value ?? throw new UsageException($"option --{name} needs a value") : fallback;
    }

    /// <summary>An integer option.</summary>
    public long Int(string name, long fallback)
    {
        string? text = Option(name);
        if (text is null) return fallback;
        return long.TryParse(text, out long value) ? value : throw new UsageException($"option --{name} expects an integer, got '{text}'");
    }

    /// <summary>An integer option that must fit an int: a larger value is an error, never wrapped to a small one.</summary>
    public int Int32(string name, int fallback)
    {
        long value = Int(name, fallback);
        return value is >= int.MinValue and <= int.MaxValue ? (int)value : throw new UsageException($"option --{name} is {value}, outside {int.MinValue}..{int.MaxValue}");
    }

    /// <summary>A floating-point option (invariant culture: 3e-4, 0.9).</summary>
    public double Double(string name, double fallback)
    {
        string? text = Option(name);
        if (text is null) return fallback;
        return double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double value) && double.IsFinite(value)
            ? value : throw new UsageException($"option --{name} expects a number, got '{text}'");
    }

    /// <summary>Every value given for --name (the option repeated: --text a --text b).</summary>
    public IReadOnlyList<string> Values(string name)
    {
        _read.Add(name);
        return _multi.TryGetValue(name, out var list) ? list : [];
    }

    /// <summary>True when --name was given.</summary>
    public bool Flag(string name)
    {
        _read.Add(name);
        return _options.ContainsKey(name);
    }

    /// <summary>Fails on options nobody asked for.</summary>
    public void RejectUnknown()
    {
        var unknown = _options.Keys.Where(k => !_read.Contains(k)).ToArray();
        if (unknown.Length > 0) throw new UsageException($"unknown option{(unknown.Length > 1 ? "s" : "")}: {string.Join(", ", unknown.Select(u => "--" + u))}");
    }
}
