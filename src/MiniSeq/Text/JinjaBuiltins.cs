// The Jinja filters, tests, global functions and Python string/dict methods that chat templates use, with Python's
// behaviour (str.strip's whitespace set, split with and without a separator, json.dumps layout for transformers'
// tojson, strftime in the C locale). Only the names listed here parse; anything else is rejected by JinjaParser.

using System.Globalization;
using System.Text;

namespace MiniSeq.Text;

internal static class JinjaBuiltins
{
    private static readonly HashSet<string> s_filters =
    [
        "abs", "capitalize", "count", "d", "default", "first", "float", "int", "items", "join", "last", "length", "list",
        "lower", "map", "reject", "rejectattr", "replace", "reverse", "safe", "select", "selectattr", "string", "title",
        "tojson", "trim", "upper",
    ];

    private static readonly HashSet<string> s_tests =
    [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "float", "ge", "gt",
        "greaterthan", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none", "number",
        "odd", "sameas", "sequence", "string", "true", "undefined", "upper", "==", "!=", "<", "<=", ">", ">=",
    ];

    private static readonly HashSet<string> s_stringMethods =
    [
        "capitalize", "endswith", "find", "join", "lower", "lstrip", "replace", "rstrip", "split", "splitlines",
        "startswith", "strip", "title", "upper",
    ];

    private static readonly HashSet<string> s_dictMethods = ["get", "items", "keys", "values"];

    private static readonly HashSet<string> s_globals = ["dict", "namespace", "raise_exception", "range", "strftime_now"];

    public static bool IsFilter(string name) => s_filters.Contains(name);

    public static bool IsTest(string name) => s_tests.Contains(name);

    public static bool IsStringMethod(string name) => s_stringMethods.Contains(name);

    public static bool IsDictMethod(string name) => s_dictMethods.Contains(name);

    public static bool IsMethod(string name) => s_stringMethods.Contains(name) || s_dictMethods.Contains(name);

    public static bool IsGlobalFunction(string name) => s_globals.Contains(name);

    public static IEnumerable<string> GlobalFunctions => s_globals;

    // ---- arguments -------------------------------------------------------------------------------------------------

    private static object? Arg(List<object?> positional, Dictionary<string, object?> named, int index, string name, object? fallback)
    {
        if (index < positional.Count)
        {
            return positional[index];
        }
        return named.TryGetValue(name, out object? v) ? v : fallback;
    }

    private static string StrArg(object? v, string what) => v switch
    {
        string s => s,
        _ => throw new JinjaRuntimeException($"{what} must be a string, not {JinjaOps.TypeName(v)}"),
    };

    // ---- methods ---------------------------------------------------------------------------------------------------

    public static JinjaCallable BindMethod(object target, string name) => new(name, (p, n) => target switch
    {
        string s => StringMethod(s, name, p, n),
        JinjaDict d => DictMethod(d, name, p, n),
        _ => throw new JinjaRuntimeException($"'{JinjaOps.TypeName(target)}' object has no attribute '{name}'"),
    });

    private static object? DictMethod(JinjaDict d, string name, List<object?> p, Dictionary<string, object?> n)
    {
        switch (name)
        {
            case "items":
                return d.Keys.Select(k => (object?)new JinjaTuple([k, d[k]])).ToList();
            case "keys":
                return d.Keys.Select(k => (object?)k).ToList();
            case "values":
                return d.Keys.Select(k => d[k]).ToList();
            case "get":
                {
                    object? key = Arg(p, n, 0, "key", null);
                    return key is not null and not JinjaUndefined && d.TryGet(key, out object? v) ? v : Arg(p, n, 1, "default", null);
                }
            default:
                throw new JinjaRuntimeException($"'dict' object has no attribute '{name}'");
        }
    }

    private static object? StringMethod(string s, string name, List<object?> p, Dictionary<string, object?> n)
    {
        switch (name)
        {
            case "startswith":
            case "endswith":
                {
                    object? arg = Arg(p, n, 0, "prefix", null);
                    IEnumerable<object?> options = arg is List<object?> list ? list : [arg];
                    return options.Any(o => name == "startswith"
                        ? s.StartsWith(StrArg(o, name + " argument"), StringComparison.Ordinal)
                        : s.EndsWith(StrArg(o, name + " argument"), StringComparison.Ordinal));
                }
            case "strip":
                return PyStrip(s, Arg(p, n, 0, "chars", null), left: true, right: true);
            case "lstrip":
                return PyStrip(s, Arg(p, n, 0, "chars", null), left: true, right: false);
            case "rstrip":
                return PyStrip(s, Arg(p, n, 0, "chars", null), left: false, right: true);
            case "split":
                return PySplit(s, Arg(p, n, 0, "sep", null), JinjaOps.ToLong(Arg(p, n, 1, "maxsplit", -1L)));
            case "splitlines":
                return s.Split('\n').Select(x => (object?)x.TrimEnd('\r')).SkipLast(s.EndsWith('\n') ? 1 : 0).ToList();
            case "lower":
                return s.ToLowerInvariant();
            case "upper":
                return s.ToUpperInvariant();
            case "title":
                return Title(s);
            case "capitalize":
                return s.Length == 0 ? s : s[..1].ToUpperInvariant() + s[1..].ToLowerInvariant();
            case "replace":
                {
                    string old = StrArg(Arg(p, n, 0, "old", null), "replace argument");
                    string with = StrArg(Arg(p, n, 1, "new", null), "replace argument");
                    long count = JinjaOps.ToLong(Arg(p, n, 2, "count", -1L));
                    return Replace(s, old, with, count);
                }
            case "find":
                {
                    int i = s.IndexOf(StrArg(Arg(p, n, 0, "sub", null), "find argument"), StringComparison.Ordinal);
                    return i < 0 ? -1L : (long)JinjaOps.Length(s[..i]);
                }
            case "join":
                return string.Join(s, JinjaOps.Iterate(Arg(p, n, 0, "iterable", null)).Select(x => StrArg(x, "join item")));
            default:
                throw new JinjaRuntimeException($"'str' object has no attribute '{name}'");
        }
    }

    private static bool IsPyWhitespace(char c) => JinjaLexer.PyWhitespace.Contains(c);

    public static string PyStrip(string s, object? chars, bool left, bool right)
    {
        Func<char, bool> strip = chars switch
        {
            null or JinjaUndefined => IsPyWhitespace,
            string set => set.Contains,
            _ => throw new JinjaRuntimeException("strip arg must be None or str"),
        };
        int start = 0;
        int end = s.Length;
        while (left && start < end && strip(s[start]))
        {
            start++;
        }
        while (right && end > start && strip(s[end - 1]))
        {
            end--;
        }
        return s[start..end];
    }

    private static List<object?> PySplit(string s, object? sep, long maxSplit)
    {
        var parts = new List<object?>();
        if (sep is null or JinjaUndefined)
        {
            // Runs of whitespace separate; leading and trailing whitespace give no empty strings.
            int i = 0;
            while (true)
            {
                while (i < s.Length && IsPyWhitespace(s[i]))
                {
                    i++;
                }
                if (i >= s.Length)
                {
                    break;
                }
                if (maxSplit >= 0 && parts.Count == maxSplit)
                {
                    parts.Add(PyStrip(s[i..], null, left: false, right: true));
                    break;
                }
                int start = i;
                while (i < s.Length && !IsPyWhitespace(s[i]))
                {
                    i++;
                }
                parts.Add(s[start..i]);
            }
            return parts;
        }
        string separator = StrArg(sep, "separator");
        if (separator.Length == 0)
        {
            throw new JinjaRuntimeException("empty separator");
        }
        int from = 0;
        while (maxSplit < 0 || parts.Count < maxSplit)
        {
            int at = s.IndexOf(separator, from, StringComparison.Ordinal);
            if (at < 0)
            {
                break;
            }
            parts.Add(s[from..at]);
            from = at + separator.Length;
        }
        parts.Add(s[from..]);
        return parts;
    }

    private static string Replace(string s, string old, string with, long count)
    {
        if (count < 0)
        {
            return old.Length == 0 ? Replace(s, old, with, long.MaxValue) : s.Replace(old, with, StringComparison.Ordinal);
        }
        var sb = new StringBuilder();
        int from = 0;
        for (long done = 0; done < count; done++)
        {
            if (old.Length == 0)
            {
                // Python inserts the replacement between characters (and at both ends).
                sb.Append(with);
                if (from >= s.Length)
                {
                    return sb.ToString();
                }
                sb.Append(s[from]);
                from++;
                continue;
            }
            int at = s.IndexOf(old, from, StringComparison.Ordinal);
            if (at < 0)
            {
                break;
            }
            sb.Append(s, from, at - from).Append(with);
            from = at + old.Length;
        }
        return sb.Append(s, from, s.Length - from).ToString();
    }

    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (char c in s)
        {
            sb.Append(previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = char.IsLetter(c);
        }
        return sb.ToString();
    }

    // ---- globals ---------------------------------------------------------------------------------------------------

    public static object? CallGlobal(string name, List<object?> p, Dictionary<string, object?> n, JinjaRenderContext context)
    {
        switch (name)
        {
            case "raise_exception":
                throw new InvalidDataException(JinjaOps.ToStr(Arg(p, n, 0, "message", "")));
            case "strftime_now":
                return Strftime(context.Now, StrArg(Arg(p, n, 0, "format", null), "strftime_now format"));
            case "range":
                {
                    if (p.Count == 0)
                    {
                        throw new JinjaRuntimeException("range expected at least 1 argument");
                    }
                    long start = p.Count >= 2 ? JinjaOps.ToLong(p[0]) : 0;
                    long stop = JinjaOps.ToLong(p.Count >= 2 ? p[1] : p[0]);
                    long step = p.Count >= 3 ? JinjaOps.ToLong(p[2]) : 1;
                    if (step == 0)
                    {
                        throw new JinjaRuntimeException("range() arg 3 must not be zero");
                    }
                    var list = new List<object?>();
                    for (long i = start; step > 0 ? i < stop : i > stop; i += step)
                    {
                        list.Add(i);
                    }
                    return list;
                }
            case "namespace":
            case "dict":
                {
                    var dict = new JinjaDict();
                    foreach (object? arg in p)
                    {
                        if (arg is not JinjaDict source)
                        {
                            throw new JinjaRuntimeException($"{name}() takes keyword arguments or a dict");
                        }
                        foreach (object key in source.Keys)
                        {
                            dict.Set(key, source[key]);
                        }
                    }
                    foreach ((string key, object? value) in n)
                    {
                        dict.Set(key, value);
                    }
                    if (name == "dict")
                    {
                        return dict;
                    }
                    var ns = new JinjaNamespace();
                    foreach (object key in dict.Keys)
                    {
                        ns.Attributes.Set(key, dict[key]);
                    }
                    return ns;
                }
            default:
                throw new JinjaRuntimeException($"'{name}' is undefined");
        }
    }

    private static readonly string[] s_monthAbbr = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    private static readonly string[] s_months =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    private static readonly string[] s_dayAbbr = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    private static readonly string[] s_days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

    /// <summary>C-locale <c>strftime</c> for the common directives (glibc's <c>%-d</c> no-padding form included).</summary>
    public static string Strftime(DateTime t, string format)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                sb.Append(format[i]);
                continue;
            }
            char c = format[++i];
            bool noPad = false;
            if (c == '-' && i + 1 < format.Length)
            {
                noPad = true;
                c = format[++i];
            }
            string Num(int v, int width) => noPad ? v.ToString(CultureInfo.InvariantCulture) : v.ToString(new string('0', width), CultureInfo.InvariantCulture);
            sb.Append(c switch
            {
                'd' => Num(t.Day, 2),
                'e' => noPad ? Num(t.Day, 1) : t.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
                'm' => Num(t.Month, 2),
                'Y' => t.Year.ToString(CultureInfo.InvariantCulture),
                'y' => Num(t.Year % 100, 2),
                'b' or 'h' => s_monthAbbr[t.Month - 1],
                'B' => s_months[t.Month - 1],
                'a' => s_dayAbbr[(int)t.DayOfWeek],
                'A' => s_days[(int)t.DayOfWeek],
                'H' => Num(t.Hour, 2),
                'I' => Num(t.Hour % 12 == 0 ? 12 : t.Hour % 12, 2),
                'M' => Num(t.Minute, 2),
                'S' => Num(t.Second, 2),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'j' => Num(t.DayOfYear, 3),
                'F' => t.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => throw new NotSupportedException($"chat template: unsupported strftime directive '%{c}'"),
            });
        }
        return sb.ToString();
    }

    // ---- filters ---------------------------------------------------------------------------------------------------

    public static object? ApplyFilter(string name, object? value, List<object?> p, Dictionary<string, object?> n, JinjaRenderContext context)
    {
        switch (name)
        {
            case "trim":
                return PyStrip(JinjaOps.ToStr(value), Arg(p, n, 0, "chars", null), left: true, right: true);
            case "length":
            case "count":
                return (long)JinjaOps.Length(value);
            case "string":
                return JinjaOps.ToStr(value);
            case "safe":
                return value;
            case "upper":
                return JinjaOps.ToStr(value).ToUpperInvariant();
            case "lower":
                return JinjaOps.ToStr(value).ToLowerInvariant();
            case "capitalize":
                return StringMethod(JinjaOps.ToStr(value), "capitalize", [], []);
            case "title":
                return Title(JinjaOps.ToStr(value));
            case "replace":
                return StringMethod(JinjaOps.ToStr(value), "replace", p, n);
            case "default":
            case "d":
                {
                    bool boolean = JinjaOps.Truthy(Arg(p, n, 1, "boolean", false));
                    bool useDefault = value is JinjaUndefined || (boolean && !JinjaOps.Truthy(value));
                    return useDefault ? Arg(p, n, 0, "default_value", "") : value;
                }
            case "list":
                return new List<object?>(JinjaOps.Iterate(value));
            case "first":
                {
                    List<object?> items = JinjaOps.Iterate(value);
                    return items.Count > 0 ? items[0] : new JinjaUndefined("first of an empty sequence");
                }
            case "last":
                {
                    List<object?> items = JinjaOps.Iterate(value);
                    return items.Count > 0 ? items[^1] : new JinjaUndefined("last of an empty sequence");
                }
            case "reverse":
                {
                    if (value is string s)
                    {
                        List<object?> chars = JinjaOps.CodePoints(s);
                        chars.Reverse();
                        return string.Concat(chars.Cast<string>());
                    }
                    var items = new List<object?>(JinjaOps.Iterate(value));
                    items.Reverse();
                    return items;
                }
            case "join":
                {
                    string separator = JinjaOps.ToStr(Arg(p, n, 0, "d", ""));
                    object? attribute = Arg(p, n, 1, "attribute", null);
                    IEnumerable<object?> items = JinjaOps.Iterate(value);
                    if (attribute is not null)
                    {
                        items = items.Select(x => Attribute(x, attribute));
                    }
                    return string.Join(separator, items.Select(JinjaOps.ToStr));
                }
            case "items":
                return value switch
                {
                    JinjaUndefined => new List<object?>(),
                    JinjaDict d => DictMethod(d, "items", [], []),
                    _ => throw new JinjaRuntimeException($"can only get item pairs from a mapping, not {JinjaOps.TypeName(value)}"),
                };
            case "int":
                return ToInt(value, Arg(p, n, 0, "default", 0L));
            case "float":
                return ToFloat(value, Arg(p, n, 0, "default", 0.0));
            case "abs":
                return value switch
                {
                    long l => (object)Math.Abs(l),
                    double d => Math.Abs(d),
                    bool b => b ? 1L : 0L,
                    _ => throw new JinjaRuntimeException($"bad operand type for abs(): '{JinjaOps.TypeName(value)}'"),
                };
            case "tojson":
                return ToJson(value, Arg(p, n, 1, "indent", null), Arg(p, n, 3, "sort_keys", false), Arg(p, n, 2, "separators", null),
                    JinjaOps.Truthy(Arg(p, n, 0, "ensure_ascii", false)));
            case "select":
            case "reject":
            case "selectattr":
            case "rejectattr":
                return SelectOrReject(name, value, p, context);
            case "map":
                return Map(value, p, n, context);
            default:
                throw new NotSupportedException($"chat template: unsupported Jinja filter '{name}'");
        }
    }

    private static object? Attribute(object? item, object? attribute)
    {
        object? result = item;
        foreach (string part in JinjaOps.ToStr(attribute).Split('.'))
        {
            result = long.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out long index)
                ? JinjaOps.GetItem(result, index)
                : JinjaOps.GetItem(result, part);
        }
        return result;
    }

    private static List<object?> SelectOrReject(string name, object? value, List<object?> p, JinjaRenderContext context)
    {
        bool byAttribute = name.EndsWith("attr", StringComparison.Ordinal);
        bool keep = name.StartsWith("select", StringComparison.Ordinal);
        int first = byAttribute ? 1 : 0;
        if (byAttribute && p.Count == 0)
        {
            throw new JinjaRuntimeException($"{name} needs an attribute name");
        }
        string? test = p.Count > first ? StrArg(p[first], $"{name} test name") : null;
        if (test is not null && !IsTest(test))
        {
            throw new NotSupportedException($"chat template: unsupported Jinja test '{test}'");
        }
        List<object?> testArgs = p.Count > first + 1 ? p[(first + 1)..] : [];
        var result = new List<object?>();
        foreach (object? item in JinjaOps.Iterate(value))
        {
            object? subject = byAttribute ? Attribute(item, p[0]) : item;
            bool passed = test is null ? JinjaOps.Truthy(subject) : ApplyTest(test, subject, testArgs, context);
            if (passed == keep)
            {
                result.Add(item);
            }
        }
        return result;
    }

    private static List<object?> Map(object? value, List<object?> p, Dictionary<string, object?> n, JinjaRenderContext context)
    {
        List<object?> items = JinjaOps.Iterate(value);
        if (n.TryGetValue("attribute", out object? attribute))
        {
            bool hasDefault = n.TryGetValue("default", out object? fallback);
            return items.Select(x =>
            {
                object? v = Attribute(x, attribute);
                return hasDefault && v is JinjaUndefined ? fallback : v;
            }).ToList();
        }
        if (p.Count == 0)
        {
            throw new JinjaRuntimeException("map needs a filter name or attribute=");
        }
        string filter = StrArg(p[0], "map filter name");
        if (!IsFilter(filter))
        {
            throw new NotSupportedException($"chat template: unsupported Jinja filter '{filter}'");
        }
        List<object?> rest = p[1..];
        return items.Select(x => ApplyFilter(filter, x, rest, n, context)).ToList();
    }

    private static object? ToInt(object? value, object? fallback) => value switch
    {
        bool b => b ? 1L : 0L,
        long l => (object)l,
        double d => (long)Math.Truncate(d),
        string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long l) => l,
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => (long)Math.Truncate(d),
        _ => fallback,
    };

    private static object? ToFloat(object? value, object? fallback) => value switch
    {
        bool b => b ? 1.0 : 0.0,
        long l => (object)(double)l,
        double d => d,
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => d,
        _ => fallback,
    };

    // ---- tests -----------------------------------------------------------------------------------------------------

    public static bool ApplyTest(string name, object? value, List<object?> args, JinjaRenderContext context)
    {
        object? Other() => args.Count > 0 ? args[0] : throw new JinjaRuntimeException($"test '{name}' needs an argument");
        switch (name)
        {
            case "defined":
                return value is not JinjaUndefined;
            case "undefined":
                return value is JinjaUndefined;
            case "none":
                return value is null;
            case "boolean":
                return value is bool;
            case "true":
                return value is true;
            case "false":
                return value is false;
            case "string":
                return value is string;
            case "number":
                return JinjaOps.IsNumber(value);
            case "integer":
                return value is long;
            case "float":
                return value is double;
            case "mapping":
                return value is JinjaDict;
            case "iterable":
                return value is string or List<object?> or JinjaDict or JinjaUndefined;
            case "sequence":
                return value is string or List<object?> or JinjaDict or JinjaUndefined;
            case "callable":
                return value is JinjaCallable;
            case "lower":
                return value is string ls && ls.Any(char.IsLower) && !ls.Any(char.IsUpper);
            case "upper":
                return value is string us && us.Any(char.IsUpper) && !us.Any(char.IsLower);
            case "odd":
                return JinjaOps.ToLong(value) % 2 != 0;
            case "even":
                return JinjaOps.ToLong(value) % 2 == 0;
            case "divisibleby":
                return JinjaOps.ToLong(value) % JinjaOps.ToLong(Other()) == 0;
            case "eq":
            case "equalto":
            case "==":
                return JinjaOps.PyEquals(value, Other());
            case "ne":
            case "!=":
                return !JinjaOps.PyEquals(value, Other());
            case "lt":
            case "lessthan":
            case "<":
                return JinjaOps.Compare(value, Other(), "<") < 0;
            case "le":
            case "<=":
                return JinjaOps.Compare(value, Other(), "<=") <= 0;
            case "gt":
            case "greaterthan":
            case ">":
                return JinjaOps.Compare(value, Other(), ">") > 0;
            case "ge":
            case ">=":
                return JinjaOps.Compare(value, Other(), ">=") >= 0;
            case "in":
                return JinjaOps.Contains(Other(), value);
            case "sameas":
                return ReferenceEquals(value, Other()) || (value is null && Other() is null) || (value is bool b && Other() is bool ob && b == ob);
            default:
                throw new NotSupportedException($"chat template: unsupported Jinja test '{name}'");
        }
    }

    // ---- tojson ----------------------------------------------------------------------------------------------------

    /// <summary>
    /// transformers' <c>tojson</c>: Python <c>json.dumps(x, ensure_ascii=False, indent=…, separators=…, sort_keys=…)</c>
    /// (not Jinja's HTML-escaping one): ", " and ": " separators, or "," and ": " when indented.
    /// </summary>
    public static string ToJson(object? value, object? indent, object? sortKeys, object? separators, bool ensureAscii = false)
    {
        string? indentText = indent switch
        {
            null => null,
            long l => new string(' ', (int)Math.Max(0, l)),
            string s => s,
            _ => throw new JinjaRuntimeException("tojson indent must be an int or a string"),
        };
        string itemSeparator = indentText is null ? ", " : ",";
        string keySeparator = ": ";
        if (separators is List<object?> { Count: 2 } seps)
        {
            itemSeparator = StrArg(seps[0], "tojson separator");
            keySeparator = StrArg(seps[1], "tojson separator");
        }
        var sb = new StringBuilder();
        WriteJson(sb, value, indentText, 0, itemSeparator, keySeparator, JinjaOps.Truthy(sortKeys));
        if (ensureAscii)
        {
            // json.dumps(ensure_ascii=True): every character outside ' '..'~' left unescaped becomes \uXXXX (UTF-16).
            var ascii = new StringBuilder(sb.Length);
            foreach (char c in sb.ToString())
            {
                if (c > '~')
                {
                    ascii.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                }
                else
                {
                    ascii.Append(c);
                }
            }
            return ascii.ToString();
        }
        return sb.ToString();
    }

    private static void WriteJson(StringBuilder sb, object? v, string? indent, int level, string itemSep, string keySep, bool sortKeys)
    {
        switch (v)
        {
            case null:
                sb.Append("null");
                return;
            case bool b:
                sb.Append(b ? "true" : "false");
                return;
            case long l:
                sb.Append(l.ToString(CultureInfo.InvariantCulture));
                return;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : JinjaOps.FloatRepr(d));
                return;
            case string s:
                WriteJsonString(sb, s);
                return;
            case List<object?> list:
                WriteContainer(sb, '[', ']', list.Count, indent, level, itemSep, i => WriteJson(sb, list[i], indent, level + 1, itemSep, keySep, sortKeys));
                return;
            case JinjaDict dict:
                {
                    List<(string Key, object? Value)> entries = [.. dict.Keys.Select(k => (JsonKey(k), dict[k]))];
                    if (sortKeys)
                    {
                        entries.Sort((x, y) => string.CompareOrdinal(x.Key, y.Key));
                    }
                    WriteContainer(sb, '{', '}', entries.Count, indent, level, itemSep, i =>
                    {
                        WriteJsonString(sb, entries[i].Key);
                        sb.Append(keySep);
                        WriteJson(sb, entries[i].Value, indent, level + 1, itemSep, keySep, sortKeys);
                    });
                    return;
                }
            default:
                throw new JinjaRuntimeException($"Object of type {JinjaOps.TypeName(v)} is not JSON serializable");
        }
    }

    private static string JsonKey(object key) => key switch
    {
        string s => s,
        bool b => b ? "true" : "false",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => JinjaOps.FloatRepr(d),
        _ => throw new JinjaRuntimeException($"keys must be str, int, float, bool or None, not {JinjaOps.TypeName(key)}"),
    };

    private static void WriteContainer(StringBuilder sb, char open, char close, int count, string? indent, int level, string itemSep, Action<int> writeItem)
    {
        sb.Append(open);
        if (count == 0)
        {
            sb.Append(close);
            return;
        }
        for (int i = 0; i < count; i++)
        {
            if (i > 0)
            {
                sb.Append(itemSep);
            }
            if (indent is not null)
            {
                sb.Append('\n');
                for (int k = 0; k <= level; k++)
                {
                    sb.Append(indent);
                }
            }
            writeItem(i);
        }
        if (indent is not null)
        {
            sb.Append('\n');
            for (int k = 0; k < level; k++)
            {
                sb.Append(indent);
            }
        }
        sb.Append(close);
    }

    private static void WriteJsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20)
                    {
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }
                    break;
            }
        }
        sb.Append('"');
    }
}
