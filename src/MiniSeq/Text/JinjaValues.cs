// Jinja/Python values for the chat-template runtime and the Python semantics of the operations on them: truthiness,
// str() and repr(), ==, ordering, + - * / // % **, membership, indexing and slicing (strings by code point, as
// Python). Values are plain CLR objects: null (None), JinjaUndefined, bool, long, double, string, List<object?>
// (list or tuple), JinjaDict, JinjaNamespace, JinjaLoop and JinjaCallable. No big integers, sets, bytes or Markup.

using System.Globalization;
using System.Text;

namespace MiniSeq.Text;

/// <summary>A runtime error in a template (Python would raise); becomes an <see cref="InvalidDataException"/>.</summary>
internal sealed class JinjaRuntimeException(string message) : Exception(message);

/// <summary>Jinja's default <c>Undefined</c>: prints as "", is falsy, iterates as empty; other use is an error.</summary>
internal sealed class JinjaUndefined(string name)
{
    public string Name { get; } = name;

    public JinjaRuntimeException Error() => new($"'{Name}' is undefined");
}

/// <summary>A Python tuple: a list that prints with parentheses.</summary>
internal sealed class JinjaTuple(IEnumerable<object?> items) : List<object?>(items);

/// <summary>A Python dict: insertion-ordered, keys compared with Python equality.</summary>
internal sealed class JinjaDict
{
    private readonly List<object> _keys = [];
    private readonly Dictionary<object, object?> _values = new(PyKeyComparer.Instance);

    public int Count => _keys.Count;

    public IReadOnlyList<object> Keys => _keys;

    public void Set(object key, object? value)
    {
        if (!_values.ContainsKey(key))
        {
            _keys.Add(key);
        }
        _values[key] = value;
    }

    public bool TryGet(object key, out object? value) => _values.TryGetValue(key, out value);

    public bool ContainsKey(object key) => _values.ContainsKey(key);

    public object? this[object key] => _values[key];

    private sealed class PyKeyComparer : IEqualityComparer<object>
    {
        public static readonly PyKeyComparer Instance = new();

        public new bool Equals(object? x, object? y) => JinjaOps.PyEquals(x, y);

        public int GetHashCode(object obj) => obj switch
        {
            bool b => b ? 1 : 0,
            long l => l.GetHashCode(),
            double d when d == Math.Floor(d) && Math.Abs(d) < 9e18 => ((long)d).GetHashCode(),
            string s => StringComparer.Ordinal.GetHashCode(s),
            _ => obj.GetHashCode(),
        };
    }
}

/// <summary>The object <c>namespace(...)</c> returns: the one value a template may assign attributes on.</summary>
internal sealed class JinjaNamespace
{
    public JinjaDict Attributes { get; } = new();
}

/// <summary>The <c>loop</c> variable of a for loop.</summary>
internal sealed class JinjaLoop(List<object?> items)
{
    public int Index0 { get; set; }

    public object? Get(string name) => name switch
    {
        "index0" => (long)Index0,
        "index" => (long)(Index0 + 1),
        "revindex0" => (long)(items.Count - Index0 - 1),
        "revindex" => (long)(items.Count - Index0),
        "first" => Index0 == 0,
        "last" => Index0 == items.Count - 1,
        "length" => (long)items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? items[Index0 - 1] : new JinjaUndefined("there is no previous item"),
        "nextitem" => Index0 + 1 < items.Count ? items[Index0 + 1] : new JinjaUndefined("there is no next item"),
        _ => new JinjaUndefined($"loop.{name}"),
    };
}

/// <summary>A function value: a builtin, a bound string/dict method or a macro.</summary>
internal sealed class JinjaCallable(string name, Func<List<object?>, Dictionary<string, object?>, object?> invoke)
{
    public string Name { get; } = name;

    public object? Invoke(List<object?> positional, Dictionary<string, object?> named) => invoke(positional, named);
}

internal static class JinjaOps
{
    public static bool IsNumber(object? v) => v is bool or long or double;

    public static bool Truthy(object? v) => v switch
    {
        null or JinjaUndefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        JinjaDict dict => dict.Count > 0,
        _ => true,
    };

    /// <summary>Python <c>str(v)</c>; Undefined prints as "".</summary>
    public static string ToStr(object? v) => v switch
    {
        string s => s,
        JinjaUndefined => "",
        _ => Repr(v),
    };

    /// <summary>Python <c>repr(v)</c>.</summary>
    public static string Repr(object? v)
    {
        switch (v)
        {
            case null:
                return "None";
            case JinjaUndefined:
                return "";
            case bool b:
                return b ? "True" : "False";
            case long l:
                return l.ToString(CultureInfo.InvariantCulture);
            case double d:
                return FloatRepr(d);
            case string s:
                return StringRepr(s);
            case JinjaTuple tuple:
                return tuple.Count == 1 ? "(" + Repr(tuple[0]) + ",)" : "(" + string.Join(", ", tuple.Select(Repr)) + ")";
            case List<object?> list:
                return "[" + string.Join(", ", list.Select(Repr)) + "]";
            case JinjaDict dict:
                return "{" + string.Join(", ", dict.Keys.Select(k => Repr(k) + ": " + Repr(dict[k]))) + "}";
            case JinjaNamespace ns:
                return "<Namespace " + Repr(ToDictionaryValue(ns)) + ">";
            case JinjaCallable c:
                return $"<function {c.Name}>";
            default:
                return v.ToString() ?? "";
        }
    }

    private static JinjaDict ToDictionaryValue(JinjaNamespace ns) => ns.Attributes;

    /// <summary>Python's float repr: shortest round-trip digits, fixed notation for 1e-4 &lt;= |x| &lt; 1e16.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d))
        {
            return "nan";
        }
        if (double.IsInfinity(d))
        {
            return d > 0 ? "inf" : "-inf";
        }
        if (d == 0)
        {
            return double.IsNegative(d) ? "-0.0" : "0.0";
        }
        // Shortest round-trip digits: "R" gives them, but in its own layout; take digits and exponent from it.
        string shortest = d.ToString("R", CultureInfo.InvariantCulture);
        bool negative = shortest.StartsWith('-');
        string body = negative ? shortest[1..] : shortest;
        int e = body.IndexOfAny(['E', 'e']);
        string mantissa = e >= 0 ? body[..e] : body;
        int exp10 = e >= 0 ? int.Parse(body[(e + 1)..], CultureInfo.InvariantCulture) : 0;
        int dot = mantissa.IndexOf('.');
        string intPart = dot >= 0 ? mantissa[..dot] : mantissa;
        string fracPart = dot >= 0 ? mantissa[(dot + 1)..] : "";
        string all = (intPart + fracPart).TrimStart('0');
        int leadingZeros = (intPart + fracPart).Length - all.Length;
        string digits = all.TrimEnd('0');
        if (digits.Length == 0)
        {
            digits = "0";
        }
        // value = 0.digits × 10^(exp+1) with exp the decimal exponent of the first digit
        int exp = intPart.Length - 1 - leadingZeros + exp10;
        var sb = new StringBuilder();
        if (negative)
        {
            sb.Append('-');
        }
        if (exp >= -4 && exp < 16)
        {
            if (exp < 0)
            {
                sb.Append("0.").Append('0', -exp - 1).Append(digits);
            }
            else if (digits.Length <= exp + 1)
            {
                sb.Append(digits).Append('0', exp + 1 - digits.Length).Append(".0");
            }
            else
            {
                sb.Append(digits, 0, exp + 1).Append('.').Append(digits, exp + 1, digits.Length - exp - 1);
            }
            return sb.ToString();
        }
        sb.Append(digits[0]);
        if (digits.Length > 1)
        {
            sb.Append('.').Append(digits, 1, digits.Length - 1);
        }
        sb.Append('e').Append(exp < 0 ? '-' : '+').Append(Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture));
        return sb.ToString();
    }

    private static string StringRepr(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == quote)
                    {
                        sb.Append('\\').Append(c);
                    }
                    else if (c < 0x20 || c == 0x7f)
                    {
                        sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }
                    break;
            }
        }
        return sb.Append(quote).ToString();
    }

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        JinjaUndefined => "Undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        JinjaTuple => "tuple",
        List<object?> => "list",
        JinjaDict => "dict",
        JinjaNamespace => "Namespace",
        JinjaLoop => "LoopContext",
        _ => "function",
    };

    public static bool PyEquals(object? a, object? b)
    {
        if (a is JinjaUndefined || b is JinjaUndefined)
        {
            return a is JinjaUndefined && b is JinjaUndefined;
        }
        if (IsNumber(a) && IsNumber(b))
        {
            return a is double || b is double ? ToDouble(a) == ToDouble(b) : ToLong(a) == ToLong(b);
        }
        switch (a)
        {
            case null:
                return b is null;
            case string sa:
                return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
            case List<object?> la:
                if (b is not List<object?> lb || la.Count != lb.Count || (la is JinjaTuple) != (lb is JinjaTuple))
                {
                    return false;
                }
                for (int i = 0; i < la.Count; i++)
                {
                    if (!PyEquals(la[i], lb[i]))
                    {
                        return false;
                    }
                }
                return true;
            case JinjaDict da:
                if (b is not JinjaDict db || da.Count != db.Count)
                {
                    return false;
                }
                foreach (object key in da.Keys)
                {
                    if (!db.TryGet(key, out object? vb) || !PyEquals(da[key], vb))
                    {
                        return false;
                    }
                }
                return true;
            default:
                return ReferenceEquals(a, b);
        }
    }

    public static long ToLong(object? v) => v switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        double d => (long)d,
        _ => throw new JinjaRuntimeException($"expected a number, got {TypeName(v)}"),
    };

    public static double ToDouble(object? v) => v switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        double d => d,
        _ => throw new JinjaRuntimeException($"expected a number, got {TypeName(v)}"),
    };

    /// <summary>Python ordering (&lt;): numbers, strings (by code point) and lists; anything else is a TypeError.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        FailIfUndefined(a);
        FailIfUndefined(b);
        if (IsNumber(a) && IsNumber(b))
        {
            return ToDouble(a).CompareTo(ToDouble(b));
        }
        if (a is string sa && b is string sb)
        {
            return CompareCodePoints(sa, sb);
        }
        if (a is List<object?> la && b is List<object?> lb)
        {
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (!PyEquals(la[i], lb[i]))
                {
                    return Compare(la[i], lb[i], op);
                }
            }
            return la.Count.CompareTo(lb.Count);
        }
        throw new JinjaRuntimeException($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    private static int CompareCodePoints(string a, string b)
    {
        int i = 0;
        int j = 0;
        while (i < a.Length && j < b.Length)
        {
            int ca = CodePointAt(a, i);
            int cb = CodePointAt(b, j);
            if (ca != cb)
            {
                return ca.CompareTo(cb);
            }
            i += ca > 0xFFFF ? 2 : 1;
            j += cb > 0xFFFF ? 2 : 1;
        }
        return (a.Length - i).CompareTo(b.Length - j);
    }

    private static int CodePointAt(string s, int i) =>
        char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? char.ConvertToUtf32(s[i], s[i + 1]) : s[i];

    public static void FailIfUndefined(object? v)
    {
        if (v is JinjaUndefined u)
        {
            throw u.Error();
        }
    }

    public static object? Binary(string op, object? a, object? b)
    {
        if (op == "~")
        {
            return ToStr(a) + ToStr(b);
        }
        FailIfUndefined(a);
        FailIfUndefined(b);
        switch (op)
        {
            case "+":
                if (a is string sa && b is string sb)
                {
                    return sa + sb;
                }
                if (a is List<object?> la && b is List<object?> lb)
                {
                    return new List<object?>([.. la, .. lb]);
                }
                break;
            case "*":
                if (a is string s1 && b is long or bool)
                {
                    return string.Concat(Enumerable.Repeat(s1, (int)Math.Max(0, ToLong(b))));
                }
                if (b is string s2 && a is long or bool)
                {
                    return string.Concat(Enumerable.Repeat(s2, (int)Math.Max(0, ToLong(a))));
                }
                if (a is List<object?> l1 && b is long or bool)
                {
                    return Enumerable.Repeat(l1, (int)Math.Max(0, ToLong(b))).SelectMany(x => x).ToList();
                }
                break;
            case "%" when a is string:
                throw new NotSupportedException("chat template: unsupported Python string formatting with '%'");
        }
        if (!IsNumber(a) || !IsNumber(b))
        {
            throw new JinjaRuntimeException($"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");
        }
        bool floats = a is double || b is double;
        switch (op)
        {
            case "+":
                return floats ? ToDouble(a) + ToDouble(b) : (object)(ToLong(a) + ToLong(b));
            case "-":
                return floats ? ToDouble(a) - ToDouble(b) : (object)(ToLong(a) - ToLong(b));
            case "*":
                return floats ? ToDouble(a) * ToDouble(b) : (object)(ToLong(a) * ToLong(b));
            case "/":
                if (ToDouble(b) == 0)
                {
                    throw new JinjaRuntimeException("division by zero");
                }
                return ToDouble(a) / ToDouble(b);
            case "//":
                if (ToDouble(b) == 0)
                {
                    throw new JinjaRuntimeException("integer division or modulo by zero");
                }
                return floats ? Math.Floor(ToDouble(a) / ToDouble(b)) : (object)FloorDiv(ToLong(a), ToLong(b));
            case "%":
                if (ToDouble(b) == 0)
                {
                    throw new JinjaRuntimeException("integer division or modulo by zero");
                }
                if (floats)
                {
                    double x = ToDouble(a);
                    double y = ToDouble(b);
                    double m = x % y;
                    return m != 0 && (m < 0) != (y < 0) ? m + y : m;
                }
                long r = ToLong(a) % ToLong(b);
                return r != 0 && (r < 0) != (ToLong(b) < 0) ? r + ToLong(b) : r;
            case "**":
                if (!floats && ToLong(b) >= 0)
                {
                    long result = 1;
                    for (long i = 0; i < ToLong(b); i++)
                    {
                        result *= ToLong(a);
                    }
                    return result;
                }
                return Math.Pow(ToDouble(a), ToDouble(b));
            default:
                throw new JinjaRuntimeException($"unknown operator '{op}'");
        }
    }

    private static long FloorDiv(long a, long b)
    {
        long q = a / b;
        return (a % b != 0) && ((a < 0) != (b < 0)) ? q - 1 : q;
    }

    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                if (item is not string sub)
                {
                    throw new JinjaRuntimeException($"'in <string>' requires string as left operand, not {TypeName(item)}");
                }
                return s.Contains(sub, StringComparison.Ordinal);
            case List<object?> list:
                return list.Any(x => PyEquals(x, item));
            case JinjaDict dict:
                return item is not null and not JinjaUndefined && dict.ContainsKey(item);
            case JinjaUndefined:
                return false;
            default:
                throw new JinjaRuntimeException($"argument of type '{TypeName(container)}' is not iterable");
        }
    }

    /// <summary>Python iteration: list items, dict keys, string characters (code points); Undefined is empty.</summary>
    public static List<object?> Iterate(object? v) => v switch
    {
        List<object?> list => list,
        JinjaDict dict => [.. dict.Keys],
        string s => [.. CodePoints(s)],
        JinjaUndefined => [],
        _ => throw new JinjaRuntimeException($"'{TypeName(v)}' object is not iterable"),
    };

    public static List<object?> CodePoints(string s)
    {
        var result = new List<object?>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                result.Add(s.Substring(i, 2));
                i++;
            }
            else
            {
                result.Add(s[i].ToString());
            }
        }
        return result;
    }

    public static int Length(object? v) => v switch
    {
        string s => CodePointCount(s),
        List<object?> list => list.Count,
        JinjaDict dict => dict.Count,
        JinjaNamespace ns => ns.Attributes.Count,
        JinjaUndefined => 0,
        _ => throw new JinjaRuntimeException($"object of type '{TypeName(v)}' has no len()"),
    };

    private static int CodePointCount(string s)
    {
        int n = s.Length;
        for (int i = 0; i + 1 < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && char.IsLowSurrogate(s[i + 1]))
            {
                n--;
                i++;
            }
        }
        return n;
    }

    /// <summary>Jinja's subscript: missing keys and out-of-range indexes give Undefined, as Jinja's getitem does.</summary>
    public static object? GetItem(object? target, object? key)
    {
        switch (target)
        {
            case JinjaUndefined u:
                throw u.Error();
            case JinjaDict dict:
                return key is not null and not JinjaUndefined && dict.TryGet(key, out object? value)
                    ? value
                    : key is string method && JinjaBuiltins.IsDictMethod(method) ? JinjaBuiltins.BindMethod(dict, method) : new JinjaUndefined(Repr(key));
            case List<object?> list when key is long or bool:
                {
                    long i = ToLong(key);
                    if (i < 0)
                    {
                        i += list.Count;
                    }
                    return i >= 0 && i < list.Count ? list[(int)i] : new JinjaUndefined($"index {ToLong(key)}");
                }
            case string s when key is long or bool:
                {
                    List<object?> chars = CodePoints(s);
                    long i = ToLong(key);
                    if (i < 0)
                    {
                        i += chars.Count;
                    }
                    return i >= 0 && i < chars.Count ? chars[(int)i] : new JinjaUndefined($"index {ToLong(key)}");
                }
            case JinjaNamespace ns when key is string attr:
                return ns.Attributes.TryGet(attr, out object? a) ? a : new JinjaUndefined(attr);
            case JinjaLoop loop when key is string attr:
                return loop.Get(attr);
            case string s when key is string stringMethod && JinjaBuiltins.IsStringMethod(stringMethod):
                return JinjaBuiltins.BindMethod(s, stringMethod);
            default:
                return new JinjaUndefined(key is string k ? k : Repr(key));
        }
    }

    /// <summary>Jinja's attribute access <c>x.name</c>: a method of a string or dict first, then the item.</summary>
    public static object? GetAttr(object? target, string name)
    {
        switch (target)
        {
            case JinjaUndefined u:
                throw u.Error();
            case JinjaDict dict when JinjaBuiltins.IsDictMethod(name):
                return JinjaBuiltins.BindMethod(dict, name);
            case string s when JinjaBuiltins.IsStringMethod(name):
                return JinjaBuiltins.BindMethod(s, name);
            case JinjaDict dict:
                return dict.TryGet(name, out object? value) ? value : new JinjaUndefined(name);
            case JinjaNamespace ns:
                return ns.Attributes.TryGet(name, out object? a) ? a : new JinjaUndefined(name);
            case JinjaLoop loop:
                return loop.Get(name);
            default:
                return new JinjaUndefined(name);
        }
    }

    /// <summary>Python slicing <c>x[start:stop:step]</c> of a list or string.</summary>
    public static object? Slice(object? target, object? start, object? stop, object? step)
    {
        FailIfUndefined(target);
        List<object?> items = target switch
        {
            List<object?> list => list,
            string s => CodePoints(s),
            _ => throw new JinjaRuntimeException($"'{TypeName(target)}' object is not subscriptable"),
        };
        int n = items.Count;
        long st = step is null ? 1 : ToLong(step);
        if (st == 0)
        {
            throw new JinjaRuntimeException("slice step cannot be zero");
        }
        long Clamp(object? v, long dflt)
        {
            if (v is null)
            {
                return dflt;
            }
            long i = ToLong(v);
            if (i < 0)
            {
                i += n;
            }
            return st > 0 ? Math.Clamp(i, 0, n) : Math.Clamp(i, -1, n - 1);
        }
        long from = Clamp(start, st > 0 ? 0 : n - 1);
        long to = Clamp(stop, st > 0 ? n : -1);
        var result = new List<object?>();
        for (long i = from; st > 0 ? i < to : i > to; i += st)
        {
            result.Add(items[(int)i]);
        }
        return target is string ? string.Concat(result.Cast<string>()) : result;
    }
}
