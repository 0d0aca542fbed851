// The Jinja2 syntax tree and the recursive-descent parser that builds it from JinjaLexer tokens, with Jinja's
// operator precedence (conditional < or < and < not < comparisons/in < + - < ~ < * / // % < ** < unary < filters and
// tests < postfix). It rejects, with one line naming the construct, every tag, filter, test, function and method the
// runtime (JinjaRuntime, JinjaBuiltins) does not implement, so an unsupported template fails at Parse, not mid-render.

using System.Globalization;

namespace MiniSeq.Text;

internal abstract record JinjaExpr(int Line);

internal sealed record LiteralExpr(object? Value, int Line) : JinjaExpr(Line);

internal sealed record NameExpr(string Name, int Line) : JinjaExpr(Line);

internal sealed record ListExpr(List<JinjaExpr> Items, bool IsTuple, int Line) : JinjaExpr(Line);

internal sealed record DictExpr(List<(JinjaExpr Key, JinjaExpr Value)> Items, int Line) : JinjaExpr(Line);

internal sealed record GetAttrExpr(JinjaExpr Target, string Name, int Line) : JinjaExpr(Line);

internal sealed record GetItemExpr(JinjaExpr Target, JinjaExpr Key, int Line) : JinjaExpr(Line);

internal sealed record SliceExpr(JinjaExpr Target, JinjaExpr? Start, JinjaExpr? Stop, JinjaExpr? Step, int Line) : JinjaExpr(Line);

internal sealed record CallArgs(List<JinjaExpr> Positional, List<(string Name, JinjaExpr Value)> Named)
{
    public static readonly CallArgs None = new([], []);
}

internal sealed record CallExpr(JinjaExpr Callee, CallArgs Args, int Line) : JinjaExpr(Line);

internal sealed record FilterExpr(JinjaExpr Value, string Name, CallArgs Args, int Line) : JinjaExpr(Line);

internal sealed record TestExpr(JinjaExpr Value, string Name, CallArgs Args, bool Negated, int Line) : JinjaExpr(Line);

internal sealed record UnaryExpr(string Op, JinjaExpr Operand, int Line) : JinjaExpr(Line);

internal sealed record BinaryExpr(string Op, JinjaExpr Left, JinjaExpr Right, int Line) : JinjaExpr(Line);

internal sealed record CondExpr(JinjaExpr Test, JinjaExpr Then, JinjaExpr? Else, int Line) : JinjaExpr(Line);

internal abstract record JinjaNode(int Line);

internal sealed record TextNode(string Text, int Line) : JinjaNode(Line);

internal sealed record OutputNode(JinjaExpr Value, int Line) : JinjaNode(Line);

internal sealed record IfNode(List<(JinjaExpr Test, List<JinjaNode> Body)> Branches, List<JinjaNode>? Else, int Line) : JinjaNode(Line);

internal sealed record ForNode(List<string> Targets, JinjaExpr Iterable, JinjaExpr? Filter, List<JinjaNode> Body, List<JinjaNode>? Else, int Line)
    : JinjaNode(Line);

/// <summary><c>set name = …</c>, <c>set a, b = …</c> or <c>set ns.attr = …</c> (<see cref="Attribute"/> non-null).</summary>
internal sealed record SetNode(List<string> Targets, string? Attribute, JinjaExpr Value, int Line) : JinjaNode(Line);

internal sealed record SetBlockNode(string Target, List<JinjaNode> Body, int Line) : JinjaNode(Line);

internal sealed record MacroNode(string Name, List<(string Name, JinjaExpr? Default)> Parameters, List<JinjaNode> Body, int Line) : JinjaNode(Line);

internal sealed record LoopControlNode(bool IsBreak, int Line) : JinjaNode(Line);

/// <summary>transformers' <c>{% generation %}</c> block (AssistantTracker): rendered as its body.</summary>
internal sealed record GenerationNode(List<JinjaNode> Body, int Line) : JinjaNode(Line);

internal sealed class JinjaParser
{
    private static readonly HashSet<string> s_unsupportedTags =
    [
        "block", "extends", "include", "import", "from", "call", "filter", "with", "do", "autoescape", "raw", "trans",
    ];

    private readonly List<JinjaToken> _tokens;
    private readonly HashSet<string> _macroNames = [];
    private readonly List<(string Name, int Line)> _calledNames = [];
    private int _pos;
    private int _loopDepth;

    private JinjaParser(List<JinjaToken> tokens) => _tokens = tokens;

    public static List<JinjaNode> Parse(string template)
    {
        var parser = new JinjaParser(JinjaLexer.Tokenize(template));
        List<JinjaNode> body = parser.ParseBlock(out string? end);
        if (end is not null)
        {
            throw parser.Error($"unexpected '{end}'");
        }
        foreach ((string name, int line) in parser._calledNames)
        {
            if (!parser._macroNames.Contains(name) && !JinjaBuiltins.IsGlobalFunction(name))
            {
                throw new NotSupportedException($"chat template: unsupported Jinja function '{name}' at line {line}");
            }
        }
        return body;
    }

    private JinjaToken Current => _tokens[_pos];

    private NotSupportedException Error(string what) => JinjaLexer.Syntax(what, Current.Line);

    private static NotSupportedException Unsupported(string kind, string name, int line) =>
        new($"chat template: unsupported Jinja {kind} '{name}' at line {line}");

    private bool IsOp(string op) => Current.Kind == JinjaTokenKind.Operator && Current.Value == op;

    private bool IsName(string name) => Current.Kind == JinjaTokenKind.Name && Current.Value == name;

    private bool SkipOp(string op)
    {
        if (IsOp(op))
        {
            _pos++;
            return true;
        }
        return false;
    }

    private bool SkipName(string name)
    {
        if (IsName(name))
        {
            _pos++;
            return true;
        }
        return false;
    }

    private void ExpectOp(string op)
    {
        if (!SkipOp(op))
        {
            throw Error($"expected '{op}'");
        }
    }

    private string ExpectName()
    {
        if (Current.Kind != JinjaTokenKind.Name)
        {
            throw Error("expected a name");
        }
        return _tokens[_pos++].Value;
    }

    private void Expect(JinjaTokenKind kind, string what)
    {
        if (Current.Kind != kind)
        {
            throw Error($"expected {what}");
        }
        _pos++;
    }

    // ---- statements ------------------------------------------------------------------------------------------------

    /// <summary>Parses nodes up to an end-of-block tag (returned in <paramref name="end"/>, its name consumed) or the end.</summary>
    private List<JinjaNode> ParseBlock(out string? end)
    {
        var nodes = new List<JinjaNode>();
        while (true)
        {
            JinjaToken t = Current;
            switch (t.Kind)
            {
                case JinjaTokenKind.End:
                    end = null;
                    return nodes;
                case JinjaTokenKind.Text:
                    nodes.Add(new TextNode(t.Value, t.Line));
                    _pos++;
                    break;
                case JinjaTokenKind.OutputStart:
                    _pos++;
                    nodes.Add(new OutputNode(ParseTuple(), t.Line));
                    Expect(JinjaTokenKind.OutputEnd, "'}}'");
                    break;
                case JinjaTokenKind.StatementStart:
                    _pos++;
                    string keyword = ExpectName();
                    if (keyword is "elif" or "else" or "endif" or "endfor" or "endset" or "endmacro" or "endgeneration")
                    {
                        end = keyword;
                        return nodes;
                    }
                    nodes.Add(ParseStatement(keyword, t.Line));
                    break;
                default:
                    throw Error("unexpected token");
            }
        }
    }

    private List<JinjaNode> ParseBody(string endTag, out string end, params string[] alsoEnds)
    {
        int line = Current.Line;
        List<JinjaNode> body = ParseBlock(out string? e);
        if (e is null || (e != endTag && Array.IndexOf(alsoEnds, e) < 0))
        {
            throw e is null ? JinjaLexer.Syntax($"missing '{endTag}' for the block opened", line) : Error($"unexpected '{e}'");
        }
        end = e;
        return body;
    }

    private void EndTag() => Expect(JinjaTokenKind.StatementEnd, "'%}'");

    private JinjaNode ParseStatement(string keyword, int line)
    {
        switch (keyword)
        {
            case "if":
                return ParseIf(line);
            case "for":
                return ParseFor(line);
            case "set":
                return ParseSet(line);
            case "macro":
                return ParseMacro(line);
            case "break":
            case "continue":
                if (_loopDepth == 0)
                {
                    throw JinjaLexer.Syntax($"'{keyword}' outside a loop", line);
                }
                EndTag();
                return new LoopControlNode(keyword == "break", line);
            case "generation":
                {
                    EndTag();
                    List<JinjaNode> body = ParseBody("endgeneration", out _);
                    EndTag();
                    return new GenerationNode(body, line);
                }
            default:
                throw s_unsupportedTags.Contains(keyword)
                    ? Unsupported("tag", keyword, line)
                    : JinjaLexer.Syntax($"unknown tag '{keyword}'", line);
        }
    }

    private IfNode ParseIf(int line)
    {
        var branches = new List<(JinjaExpr, List<JinjaNode>)>();
        JinjaExpr test = ParseExpression();
        while (true)
        {
            EndTag();
            List<JinjaNode> body = ParseBody("endif", out string end, "elif", "else");
            branches.Add((test, body));
            if (end == "elif")
            {
                test = ParseExpression();
                continue;
            }
            if (end == "else")
            {
                EndTag();
                List<JinjaNode> elseBody = ParseBody("endif", out _);
                EndTag();
                return new IfNode(branches, elseBody, line);
            }
            EndTag();
            return new IfNode(branches, null, line);
        }
    }

    private ForNode ParseFor(int line)
    {
        var targets = new List<string> { ExpectName() };
        while (SkipOp(","))
        {
            targets.Add(ExpectName());
        }
        if (!SkipName("in"))
        {
            throw Error("expected 'in'");
        }
        JinjaExpr iterable = ParseTuple(withCondition: false);
        JinjaExpr? filter = SkipName("if") ? ParseExpression() : null;
        if (IsName("recursive"))
        {
            throw Unsupported("loop option", "recursive", line);
        }
        EndTag();
        _loopDepth++;
        List<JinjaNode> body = ParseBody("endfor", out string end, "else");
        _loopDepth--;
        List<JinjaNode>? elseBody = null;
        if (end == "else")
        {
            EndTag();
            elseBody = ParseBody("endfor", out _);
        }
        EndTag();
        return new ForNode(targets, iterable, filter, body, elseBody, line);
    }

    private JinjaNode ParseSet(int line)
    {
        string first = ExpectName();
        if (SkipOp("."))
        {
            string attribute = ExpectName();
            ExpectOp("=");
            JinjaExpr value = ParseTuple();
            EndTag();
            return new SetNode([first], attribute, value, line);
        }
        var targets = new List<string> { first };
        while (SkipOp(","))
        {
            targets.Add(ExpectName());
        }
        if (SkipOp("="))
        {
            JinjaExpr value = ParseTuple();
            EndTag();
            return new SetNode(targets, null, value, line);
        }
        if (targets.Count != 1 || IsOp("|"))
        {
            throw Error("expected '='");
        }
        EndTag();
        List<JinjaNode> body = ParseBody("endset", out _);
        EndTag();
        return new SetBlockNode(first, body, line);
    }

    private MacroNode ParseMacro(int line)
    {
        string name = ExpectName();
        _macroNames.Add(name);
        var parameters = new List<(string, JinjaExpr?)>();
        ExpectOp("(");
        while (!SkipOp(")"))
        {
            if (parameters.Count > 0)
            {
                ExpectOp(",");
                if (SkipOp(")"))
                {
                    break;
                }
            }
            string p = ExpectName();
            parameters.Add((p, SkipOp("=") ? ParseExpression() : null));
        }
        EndTag();
        int savedDepth = _loopDepth;
        _loopDepth = 0;
        List<JinjaNode> body = ParseBody("endmacro", out _);
        _loopDepth = savedDepth;
        if (Current.Kind == JinjaTokenKind.Name)
        {
            _pos++; // {% endmacro name %}
        }
        EndTag();
        return new MacroNode(name, parameters, body, line);
    }

    // ---- expressions -----------------------------------------------------------------------------------------------

    /// <summary>An expression, or several separated by commas (a tuple, as in <c>{{ a, b }}</c> or <c>for x in a, b</c>).</summary>
    private JinjaExpr ParseTuple(bool withCondition = true)
    {
        int line = Current.Line;
        JinjaExpr first = withCondition ? ParseExpression() : ParseOr();
        if (!IsOp(","))
        {
            return first;
        }
        var items = new List<JinjaExpr> { first };
        while (SkipOp(","))
        {
            if (Current.Kind is JinjaTokenKind.OutputEnd or JinjaTokenKind.StatementEnd || IsName("if"))
            {
                break;
            }
            items.Add(withCondition ? ParseExpression() : ParseOr());
        }
        return new ListExpr(items, IsTuple: true, line);
    }

    private JinjaExpr ParseExpression()
    {
        JinjaExpr expr = ParseOr();
        while (IsName("if"))
        {
            int line = Current.Line;
            _pos++;
            JinjaExpr test = ParseOr();
            JinjaExpr? otherwise = SkipName("else") ? ParseExpression() : null;
            expr = new CondExpr(test, expr, otherwise, line);
        }
        return expr;
    }

    private JinjaExpr ParseOr()
    {
        JinjaExpr left = ParseAnd();
        while (IsName("or"))
        {
            int line = Current.Line;
            _pos++;
            left = new BinaryExpr("or", left, ParseAnd(), line);
        }
        return left;
    }

    private JinjaExpr ParseAnd()
    {
        JinjaExpr left = ParseNot();
        while (IsName("and"))
        {
            int line = Current.Line;
            _pos++;
            left = new BinaryExpr("and", left, ParseNot(), line);
        }
        return left;
    }

    private JinjaExpr ParseNot()
    {
        if (IsName("not"))
        {
            int line = Current.Line;
            _pos++;
            return new UnaryExpr("not", ParseNot(), line);
        }
        return ParseCompare();
    }

    private JinjaExpr ParseCompare()
    {
        JinjaExpr left = ParseMath1();
        while (true)
        {
            int line = Current.Line;
            string? op = null;
            if (Current.Kind == JinjaTokenKind.Operator && Current.Value is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                op = Current.Value;
                _pos++;
            }
            else if (SkipName("in"))
            {
                op = "in";
            }
            else if (IsName("not") && _tokens[_pos + 1].Kind == JinjaTokenKind.Name && _tokens[_pos + 1].Value == "in")
            {
                _pos += 2;
                op = "not in";
            }
            if (op is null)
            {
                return left;
            }
            left = new BinaryExpr(op, left, ParseMath1(), line);
        }
    }

    private JinjaExpr ParseMath1()
    {
        JinjaExpr left = ParseConcat();
        while (Current.Kind == JinjaTokenKind.Operator && Current.Value is "+" or "-")
        {
            JinjaToken op = _tokens[_pos++];
            left = new BinaryExpr(op.Value, left, ParseConcat(), op.Line);
        }
        return left;
    }

    private JinjaExpr ParseConcat()
    {
        JinjaExpr left = ParseMath2();
        while (IsOp("~"))
        {
            int line = Current.Line;
            _pos++;
            left = new BinaryExpr("~", left, ParseMath2(), line);
        }
        return left;
    }

    private JinjaExpr ParseMath2()
    {
        JinjaExpr left = ParsePow();
        while (Current.Kind == JinjaTokenKind.Operator && Current.Value is "*" or "/" or "//" or "%")
        {
            JinjaToken op = _tokens[_pos++];
            left = new BinaryExpr(op.Value, left, ParsePow(), op.Line);
        }
        return left;
    }

    private JinjaExpr ParsePow()
    {
        JinjaExpr left = ParseUnary(withFilter: true);
        while (IsOp("**"))
        {
            int line = Current.Line;
            _pos++;
            left = new BinaryExpr("**", left, ParseUnary(withFilter: true), line);
        }
        return left;
    }

    private JinjaExpr ParseUnary(bool withFilter)
    {
        int line = Current.Line;
        JinjaExpr node;
        if (SkipOp("-"))
        {
            node = new UnaryExpr("-", ParseUnary(withFilter: false), line);
        }
        else if (SkipOp("+"))
        {
            node = new UnaryExpr("+", ParseUnary(withFilter: false), line);
        }
        else
        {
            node = ParsePostfix(ParsePrimary());
        }
        return withFilter ? ParseFilterAndTest(node) : node;
    }

    private JinjaExpr ParsePrimary()
    {
        JinjaToken t = Current;
        _pos++;
        switch (t.Kind)
        {
            case JinjaTokenKind.Name:
                return t.Value switch
                {
                    "true" or "True" => new LiteralExpr(true, t.Line),
                    "false" or "False" => new LiteralExpr(false, t.Line),
                    "none" or "None" => new LiteralExpr(null, t.Line),
                    _ => new NameExpr(t.Value, t.Line),
                };
            case JinjaTokenKind.String:
                {
                    string s = t.Value;
                    while (Current.Kind == JinjaTokenKind.String)
                    {
                        s += _tokens[_pos++].Value; // adjacent literals concatenate, as in Python
                    }
                    return new LiteralExpr(s, t.Line);
                }
            case JinjaTokenKind.Integer:
                return new LiteralExpr(long.Parse(t.Value, CultureInfo.InvariantCulture), t.Line);
            case JinjaTokenKind.Float:
                return new LiteralExpr(double.Parse(t.Value, CultureInfo.InvariantCulture), t.Line);
            case JinjaTokenKind.Operator when t.Value == "(":
                {
                    if (SkipOp(")"))
                    {
                        return new ListExpr([], IsTuple: true, t.Line);
                    }
                    JinjaExpr inner = ParseTuple();
                    ExpectOp(")");
                    return inner;
                }
            case JinjaTokenKind.Operator when t.Value == "[":
                {
                    var items = new List<JinjaExpr>();
                    while (!SkipOp("]"))
                    {
                        if (items.Count > 0)
                        {
                            ExpectOp(",");
                            if (SkipOp("]"))
                            {
                                break;
                            }
                        }
                        items.Add(ParseExpression());
                    }
                    return new ListExpr(items, IsTuple: false, t.Line);
                }
            case JinjaTokenKind.Operator when t.Value == "{":
                {
                    var items = new List<(JinjaExpr, JinjaExpr)>();
                    while (!SkipOp("}"))
                    {
                        if (items.Count > 0)
                        {
                            ExpectOp(",");
                            if (SkipOp("}"))
                            {
                                break;
                            }
                        }
                        JinjaExpr key = ParseExpression();
                        ExpectOp(":");
                        items.Add((key, ParseExpression()));
                    }
                    return new DictExpr(items, t.Line);
                }
            default:
                _pos--;
                throw Error("expected an expression");
        }
    }

    private JinjaExpr ParsePostfix(JinjaExpr node)
    {
        while (true)
        {
            int line = Current.Line;
            if (SkipOp("."))
            {
                if (Current.Kind == JinjaTokenKind.Integer)
                {
                    node = new GetItemExpr(node, new LiteralExpr(long.Parse(_tokens[_pos++].Value, CultureInfo.InvariantCulture), line), line);
                }
                else
                {
                    node = new GetAttrExpr(node, ExpectName(), line);
                }
            }
            else if (SkipOp("["))
            {
                node = ParseSubscript(node, line);
            }
            else if (IsOp("("))
            {
                node = MakeCall(node, ParseCallArgs(), line);
            }
            else
            {
                return node;
            }
        }
    }

    private JinjaExpr ParseSubscript(JinjaExpr target, int line)
    {
        JinjaExpr? start = IsOp(":") ? null : ParseExpression();
        if (start is not null && SkipOp("]"))
        {
            return new GetItemExpr(target, start, line);
        }
        ExpectOp(":");
        JinjaExpr? stop = IsOp(":") || IsOp("]") ? null : ParseExpression();
        JinjaExpr? step = null;
        if (SkipOp(":"))
        {
            step = IsOp("]") ? null : ParseExpression();
        }
        ExpectOp("]");
        return new SliceExpr(target, start, stop, step, line);
    }

    private CallArgs ParseCallArgs()
    {
        ExpectOp("(");
        var positional = new List<JinjaExpr>();
        var named = new List<(string, JinjaExpr)>();
        while (!SkipOp(")"))
        {
            if (positional.Count + named.Count > 0)
            {
                ExpectOp(",");
                if (SkipOp(")"))
                {
                    break;
                }
            }
            if (IsOp("*") || IsOp("**"))
            {
                throw Unsupported("syntax", Current.Value + "args", Current.Line);
            }
            if (Current.Kind == JinjaTokenKind.Name && _tokens[_pos + 1].Kind == JinjaTokenKind.Operator && _tokens[_pos + 1].Value == "=")
            {
                string name = ExpectName();
                _pos++;
                named.Add((name, ParseExpression()));
            }
            else
            {
                positional.Add(ParseExpression());
            }
        }
        return new CallArgs(positional, named);
    }

    private CallExpr MakeCall(JinjaExpr callee, CallArgs args, int line)
    {
        switch (callee)
        {
            case NameExpr name:
                _calledNames.Add((name.Name, line));
                break;
            case GetAttrExpr attr when JinjaBuiltins.IsMethod(attr.Name):
                break;
            case GetAttrExpr attr:
                throw Unsupported("method", attr.Name, line);
            default:
                throw Unsupported("syntax", "call of a computed value", line);
        }
        return new CallExpr(callee, args, line);
    }

    private JinjaExpr ParseFilterAndTest(JinjaExpr node)
    {
        while (true)
        {
            int line = Current.Line;
            if (SkipOp("|"))
            {
                string name = ExpectName();
                if (!JinjaBuiltins.IsFilter(name))
                {
                    throw Unsupported("filter", name, line);
                }
                CallArgs args = IsOp("(") ? ParseCallArgs() : CallArgs.None;
                node = new FilterExpr(node, name, args, line);
            }
            else if (SkipName("is"))
            {
                bool negated = SkipName("not");
                string name = ExpectName();
                if (!JinjaBuiltins.IsTest(name))
                {
                    throw Unsupported("test", name, line);
                }
                CallArgs args = CallArgs.None;
                if (IsOp("("))
                {
                    args = ParseCallArgs();
                }
                else if (Current.Kind is JinjaTokenKind.Name or JinjaTokenKind.String or JinjaTokenKind.Integer or JinjaTokenKind.Float
                    || IsOp("[") || IsOp("{"))
                {
                    if (!(IsName("else") || IsName("or") || IsName("and") || IsName("if") || IsName("is") || IsName("in") || IsName("not")))
                    {
                        args = new CallArgs([ParsePostfix(ParsePrimary())], []);
                    }
                }
                node = new TestExpr(node, name, args, negated, line);
            }
            else if (IsOp("(") && node is FilterExpr)
            {
                throw Unsupported("syntax", "call of a filter result", line);
            }
            else
            {
                return node;
            }
        }
    }
}
