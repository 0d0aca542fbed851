// A parsed Jinja2 template and the tree-walking interpreter that renders it with Jinja's scoping: a for loop body
// runs in its own scope per iteration (so a plain "set" inside it does not leak out, which is why templates use
// namespace()), if/elif do not open scopes, macros run in a scope above the template's globals. Runtime errors
// become InvalidDataException naming the line; raise_exception(msg) becomes InvalidDataException(msg).

using System.Text;

namespace MiniSeq.Text;

/// <summary>What a render needs besides the variables: the clock behind <c>strftime_now</c>.</summary>
internal sealed record JinjaRenderContext(DateTime Now);

internal sealed class JinjaTemplate
{
    private readonly List<JinjaNode> _body;

    private JinjaTemplate(List<JinjaNode> body) => _body = body;

    /// <summary>Parses a template; throws <see cref="NotSupportedException"/> (one line) on anything not supported.</summary>
    public static JinjaTemplate Parse(string source) => new(JinjaParser.Parse(source));

    public string Render(IReadOnlyDictionary<string, object?> variables, JinjaRenderContext context)
    {
        var root = new Scope(null);
        foreach (string name in JinjaBuiltins.GlobalFunctions)
        {
            root.Set(name, new JinjaCallable(name, (p, n) => JinjaBuiltins.CallGlobal(name, p, n, context)));
        }
        foreach ((string name, object? value) in variables)
        {
            root.Set(name, value);
        }
        var renderer = new Renderer(root, context);
        var output = new StringBuilder();
        renderer.Run(_body, root, output);
        return output.ToString();
    }

    private sealed class Scope(Scope? parent)
    {
        private readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);

        public Scope? Parent => parent;

        public void Set(string name, object? value) => _vars[name] = value;

        public bool TryGet(string name, out object? value)
        {
            for (Scope? s = this; s is not null; s = s.Parent)
            {
                if (s._vars.TryGetValue(name, out value))
                {
                    return true;
                }
            }
            value = null;
            return false;
        }
    }

    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    private sealed class Renderer(Scope root, JinjaRenderContext context)
    {
        private int _depth;

        public void Run(List<JinjaNode> nodes, Scope scope, StringBuilder output)
        {
            try
            {
                Execute(nodes, scope, output);
            }
            catch (JinjaRuntimeException e)
            {
                throw new InvalidDataException("chat template: " + e.Message);
            }
        }

        private Flow Execute(List<JinjaNode> nodes, Scope scope, StringBuilder output)
        {
            foreach (JinjaNode node in nodes)
            {
                Flow flow = ExecuteOne(node, scope, output);
                if (flow != Flow.Normal)
                {
                    return flow;
                }
            }
            return Flow.Normal;
        }

        private Flow ExecuteOne(JinjaNode node, Scope scope, StringBuilder output)
        {
            try
            {
                switch (node)
                {
                    case TextNode text:
                        output.Append(text.Text);
                        return Flow.Normal;
                    case OutputNode o:
                        output.Append(JinjaOps.ToStr(Eval(o.Value, scope)));
                        return Flow.Normal;
                    case IfNode i:
                        foreach ((JinjaExpr test, List<JinjaNode> body) in i.Branches)
                        {
                            if (JinjaOps.Truthy(Eval(test, scope)))
                            {
                                return Execute(body, scope, output);
                            }
                        }
                        return i.Else is null ? Flow.Normal : Execute(i.Else, scope, output);
                    case ForNode f:
                        ExecuteFor(f, scope, output);
                        return Flow.Normal;
                    case SetNode s:
                        ExecuteSet(s, scope);
                        return Flow.Normal;
                    case SetBlockNode sb:
                        {
                            var captured = new StringBuilder();
                            Execute(sb.Body, scope, captured);
                            scope.Set(sb.Target, captured.ToString());
                            return Flow.Normal;
                        }
                    case MacroNode m:
                        scope.Set(m.Name, MakeMacro(m));
                        return Flow.Normal;
                    case LoopControlNode c:
                        return c.IsBreak ? Flow.Break : Flow.Continue;
                    case GenerationNode g:
                        return Execute(g.Body, scope, output);
                    default:
                        throw new JinjaRuntimeException($"unknown node {node.GetType().Name}");
                }
            }
            catch (JinjaRuntimeException e) when (!e.Message.Contains(" at line ", StringComparison.Ordinal))
            {
                throw new JinjaRuntimeException($"{e.Message} at line {node.Line}");
            }
        }

        private void ExecuteFor(ForNode f, Scope scope, StringBuilder output)
        {
            List<object?> source = JinjaOps.Iterate(Eval(f.Iterable, scope));
            List<object?> items = source;
            if (f.Filter is not null)
            {
                items = [];
                foreach (object? item in source)
                {
                    var probe = new Scope(scope);
                    Bind(f.Targets, item, probe);
                    if (JinjaOps.Truthy(Eval(f.Filter, probe)))
                    {
                        items.Add(item);
                    }
                }
            }
            if (items.Count == 0)
            {
                if (f.Else is not null)
                {
                    Execute(f.Else, scope, output);
                }
                return;
            }
            var loop = new JinjaLoop(items);
            for (int i = 0; i < items.Count; i++)
            {
                loop.Index0 = i;
                var iteration = new Scope(scope);
                iteration.Set("loop", loop);
                Bind(f.Targets, items[i], iteration);
                if (Execute(f.Body, iteration, output) == Flow.Break)
                {
                    break;
                }
            }
        }

        private static void Bind(List<string> targets, object? item, Scope scope)
        {
            if (targets.Count == 1)
            {
                scope.Set(targets[0], item);
                return;
            }
            List<object?> parts = JinjaOps.Iterate(item);
            if (parts.Count != targets.Count)
            {
                throw new JinjaRuntimeException($"cannot unpack {parts.Count} values into {targets.Count} names");
            }
            for (int i = 0; i < targets.Count; i++)
            {
                scope.Set(targets[i], parts[i]);
            }
        }

        private void ExecuteSet(SetNode s, Scope scope)
        {
            object? value = Eval(s.Value, scope);
            if (s.Attribute is not null)
            {
                if (!scope.TryGet(s.Targets[0], out object? target) || target is not JinjaNamespace ns)
                {
                    throw new JinjaRuntimeException("cannot assign attribute on non-namespace object");
                }
                ns.Attributes.Set(s.Attribute, value);
                return;
            }
            Bind(s.Targets, value, scope);
        }

        private JinjaCallable MakeMacro(MacroNode m) => new(m.Name, (positional, named) =>
        {
            if (positional.Count > m.Parameters.Count)
            {
                throw new JinjaRuntimeException($"macro '{m.Name}' takes not more than {m.Parameters.Count} argument(s)");
            }
            if (++_depth > 100)
            {
                throw new JinjaRuntimeException("macro recursion too deep");
            }
            try
            {
                var scope = new Scope(root);
                for (int i = 0; i < m.Parameters.Count; i++)
                {
                    (string name, JinjaExpr? dflt) = m.Parameters[i];
                    object? value = i < positional.Count ? positional[i]
                        : named.TryGetValue(name, out object? v) ? v
                        : dflt is not null ? Eval(dflt, scope)
                        : new JinjaUndefined(name);
                    scope.Set(name, value);
                }
                var output = new StringBuilder();
                Execute(m.Body, scope, output);
                return output.ToString();
            }
            finally
            {
                _depth--;
            }
        });

        private object? Eval(JinjaExpr expr, Scope scope)
        {
            switch (expr)
            {
                case LiteralExpr l:
                    return l.Value;
                case NameExpr n:
                    return scope.TryGet(n.Name, out object? found) ? found : new JinjaUndefined(n.Name);
                case ListExpr list:
                    return list.IsTuple ? new JinjaTuple(list.Items.Select(x => Eval(x, scope))) : list.Items.Select(x => Eval(x, scope)).ToList();
                case DictExpr d:
                    {
                        var dict = new JinjaDict();
                        foreach ((JinjaExpr k, JinjaExpr v) in d.Items)
                        {
                            object? key = Eval(k, scope);
                            if (key is null or JinjaUndefined or List<object?> or JinjaDict)
                            {
                                throw new JinjaRuntimeException($"unhashable dict key of type '{JinjaOps.TypeName(key)}'");
                            }
                            dict.Set(key, Eval(v, scope));
                        }
                        return dict;
                    }
                case GetAttrExpr a:
                    return JinjaOps.GetAttr(Eval(a.Target, scope), a.Name);
                case GetItemExpr g:
                    return JinjaOps.GetItem(Eval(g.Target, scope), Eval(g.Key, scope));
                case SliceExpr s:
                    return JinjaOps.Slice(Eval(s.Target, scope), EvalOptional(s.Start, scope), EvalOptional(s.Stop, scope), EvalOptional(s.Step, scope));
                case CallExpr c:
                    return EvalCall(c, scope);
                case FilterExpr f:
                    {
                        object? value = Eval(f.Value, scope);
                        (List<object?> p, Dictionary<string, object?> named) = EvalArgs(f.Args, scope);
                        return JinjaBuiltins.ApplyFilter(f.Name, value, p, named, context);
                    }
                case TestExpr t:
                    {
                        object? value = Eval(t.Value, scope);
                        (List<object?> p, _) = EvalArgs(t.Args, scope);
                        return JinjaBuiltins.ApplyTest(t.Name, value, p, context) != t.Negated;
                    }
                case UnaryExpr u:
                    {
                        object? v = Eval(u.Operand, scope);
                        switch (u.Op)
                        {
                            case "not":
                                return !JinjaOps.Truthy(v);
                            case "-":
                                JinjaOps.FailIfUndefined(v);
                                return v switch
                                {
                                    long l => (object)(-l),
                                    double d => -d,
                                    bool b => b ? -1L : 0L,
                                    _ => throw new JinjaRuntimeException($"bad operand type for unary -: '{JinjaOps.TypeName(v)}'"),
                                };
                            default:
                                JinjaOps.FailIfUndefined(v);
                                return JinjaOps.IsNumber(v) ? v is bool b2 ? (b2 ? 1L : 0L) : v
                                    : throw new JinjaRuntimeException($"bad operand type for unary +: '{JinjaOps.TypeName(v)}'");
                        }
                    }
                case BinaryExpr b:
                    return EvalBinary(b, scope);
                case CondExpr c:
                    return JinjaOps.Truthy(Eval(c.Test, scope)) ? Eval(c.Then, scope)
                        : c.Else is null ? new JinjaUndefined("the inline if-expression") : Eval(c.Else, scope);
                default:
                    throw new JinjaRuntimeException($"unknown expression {expr.GetType().Name}");
            }
        }

        private object? EvalOptional(JinjaExpr? expr, Scope scope) => expr is null ? null : Eval(expr, scope);

        private (List<object?>, Dictionary<string, object?>) EvalArgs(CallArgs args, Scope scope)
        {
            var positional = args.Positional.Select(x => Eval(x, scope)).ToList();
            var named = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach ((string name, JinjaExpr value) in args.Named)
            {
                named[name] = Eval(value, scope);
            }
            return (positional, named);
        }

        private object? EvalCall(CallExpr c, Scope scope)
        {
            (List<object?> p, Dictionary<string, object?> n) = EvalArgs(c.Args, scope);
            if (c.Callee is NameExpr name)
            {
                if (scope.TryGet(name.Name, out object? value))
                {
                    return value is JinjaCallable callable ? callable.Invoke(p, n)
                        : throw new JinjaRuntimeException($"'{JinjaOps.TypeName(value)}' object is not callable");
                }
                return JinjaBuiltins.CallGlobal(name.Name, p, n, context);
            }
            object? target = Eval(c.Callee, scope);
            return target is JinjaCallable method ? method.Invoke(p, n)
                : target is JinjaUndefined u ? throw u.Error()
                : throw new JinjaRuntimeException($"'{JinjaOps.TypeName(target)}' object is not callable");
        }

        private object? EvalBinary(BinaryExpr b, Scope scope)
        {
            switch (b.Op)
            {
                case "and":
                    {
                        object? left = Eval(b.Left, scope);
                        return JinjaOps.Truthy(left) ? Eval(b.Right, scope) : left;
                    }
                case "or":
                    {
                        object? left = Eval(b.Left, scope);
                        return JinjaOps.Truthy(left) ? left : Eval(b.Right, scope);
                    }
            }
            object? l = Eval(b.Left, scope);
            object? r = Eval(b.Right, scope);
            return b.Op switch
            {
                "==" => JinjaOps.PyEquals(l, r),
                "!=" => !JinjaOps.PyEquals(l, r),
                "<" => JinjaOps.Compare(l, r, "<") < 0,
                "<=" => JinjaOps.Compare(l, r, "<=") <= 0,
                ">" => JinjaOps.Compare(l, r, ">") > 0,
                ">=" => JinjaOps.Compare(l, r, ">=") >= 0,
                "in" => JinjaOps.Contains(r, l),
                "not in" => !JinjaOps.Contains(r, l),
                _ => JinjaOps.Binary(b.Op, l, r),
            };
        }
    }
}
