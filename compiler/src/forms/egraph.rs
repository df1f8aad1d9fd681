//! The e-graph: a layer's computation as a term, rewrite rules that state which algorithms
//! compute the same thing, legality as an e-class analysis, and extraction of the cheapest
//! term by the target's cost model. The rules are listed with their math in `RULES.md`.

use super::cost::{self, Estimate, Shape};
use super::facts::{LayerFacts, ScanFacts};
use super::{Form, Plan, CANDIDATES, CHUNK_SIZES};
use crate::bind::Sizes;
use crate::ir::{Direction, Layer};
use crate::schedule;
use crate::target::Target;
use egg::{
    rewrite, CostFunction, DidMerge, EGraph, Extractor, Id, Language, Pattern, RecExpr, Rewrite, Runner, Subst, Symbol,
};
use ssmc_syntax::Span;
use std::collections::BTreeMap;
use std::time::Duration;

#[allow(missing_docs)]
mod lang {
    use egg::{define_language, Id, Symbol};
    define_language! {
        /// Terms of a layer's computation. `ssm`, `rev` and `bidir` say what is computed;
        /// `recurrent`, `scan`, `chunked`, `conv` and `quadratic` say how.
        pub enum SsmLang {
            "ssm" = Ssm(Id),
            "rev" = Rev(Id),
            "bidir" = Bidir([Id; 2]),
            "flip" = Flip(Id),
            "+" = Add([Id; 2]),
            "recurrent" = Recurrent(Id),
            "scan" = Scan(Id),
            "chunked" = Chunked([Id; 2]),
            "conv" = Conv(Id),
            "quadratic" = Quadratic(Id),
            Size(u32),
            Param(Symbol),
        }
    }
}
pub use lang::SsmLang;

/// Facts about the parameters of one scan, as the analysis knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamFacts {
    /// Which scan of the layer (index into [`Layer::directed_scans`](crate::ir::Layer::directed_scans)).
    pub scan: usize,
    /// The scan's facts (time-invariance, diagonal A, ...), from [`LayerFacts::of`].
    pub facts: ScanFacts,
    /// Which of [`CANDIDATES`] the target has a native schedule for, one bit each
    /// ([`schedule::available`]); all of them when it has none for any (a layer only the
    /// f64 paths run), so that extraction still ranks the legal forms.
    pub scheduled: u16,
}

impl ParamFacts {
    /// Whether the target has a native schedule for `form` of this scan.
    pub fn has_schedule(&self, form: Form) -> bool {
        CANDIDATES.iter().position(|c| *c == form).is_some_and(|i| self.scheduled & (1 << i) != 0)
    }
}

/// The e-class analysis: parameter classes carry their [`ParamFacts`]; `flip` keeps them.
#[derive(Default)]
pub struct Facts {
    /// Facts of each parameter symbol.
    pub params: BTreeMap<Symbol, ParamFacts>,
}

impl egg::Analysis<SsmLang> for Facts {
    type Data = Option<ParamFacts>;

    fn make(egraph: &mut EGraph<SsmLang, Self>, enode: &SsmLang) -> Self::Data {
        match enode {
            SsmLang::Param(s) => egraph.analysis.params.get(s).copied(),
            SsmLang::Flip(x) => egraph[*x].data,
            _ => None,
        }
    }

    fn merge(&mut self, a: &mut Self::Data, b: Self::Data) -> DidMerge {
        egg::merge_option(a, b, |_, _| DidMerge(false, false))
    }
}

type Graph = EGraph<SsmLang, Facts>;

fn fact(var: &str, test: fn(&ParamFacts) -> bool) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let var = var.parse().expect("rule variables are well formed");
    move |egraph, _, subst| egraph[subst[var]].data.as_ref().is_some_and(test)
}

/// `?p` is linear time-invariant.
fn is_lti(var: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    fact(var, |f| f.facts.lti)
}

/// `?p` has a scalar or diagonal A.
fn is_diagonal(var: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    fact(var, |f| f.facts.diagonal)
}

/// The rewrite rules, grouped by theme. Each has a kebab-case name and its math.
pub fn rules() -> Vec<Rewrite<SsmLang, Facts>> {
    let mut rules = vec![
        // Directions are index maps over one causal scan.
        // bidir(p, q) = ssm(p) + rev(q)
        rewrite!("bidir-split"; "(bidir ?p ?q)" => "(+ (ssm ?p) (rev ?q))"),
        // rev(p) = flip . ssm . flip: a reverse scan is a causal scan read backward
        rewrite!("rev-as-flip"; "(rev ?p)" => "(flip (ssm (flip ?p)))"),
        // flip . flip = id
        rewrite!("flip-flip"; "(flip (flip ?x))" => "?x"),
        // Forms of one causal scan.
        // h_t = Abar_t h_{t-1} + Bbar_t x_t, one step at a time
        rewrite!("ssm-to-recurrent"; "(ssm ?p)" => "(recurrent ?p)"),
        // (a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2) is associative when A is diagonal
        rewrite!("ssm-to-scan"; "(ssm ?p)" => "(scan ?p)" if is_diagonal("?p")),
        // y = K * x with K_k = C Abar^k Bbar when nothing depends on time
        rewrite!("ssm-to-conv"; "(ssm ?p)" => "(conv ?p)" if is_lti("?p")),
        // y = M x with M_ts = C_t Abar_t..Abar_{s+1} Bbar_s
        rewrite!("ssm-to-quadratic"; "(ssm ?p)" => "(quadratic ?p)"),
    ];
    // y = (C B^T o L) x within chunks of Q, plus the state passed between chunks
    for q in CHUNK_SIZES {
        let rhs: Pattern<SsmLang> = format!("(chunked ?p {q})").parse().expect("pattern is well formed");
        let lhs: Pattern<SsmLang> = "(ssm ?p)".parse().expect("pattern is well formed");
        let applier = egg::ConditionalApplier { condition: is_diagonal("?p"), applier: rhs };
        rules.push(Rewrite::new(format!("ssm-to-chunked-{q}"), lhs, applier).expect("rule is well formed"));
    }
    rules
}

/// The start term of a layer and the parameter symbol of each scan.
fn start_term(layer: &Layer) -> (RecExpr<SsmLang>, Vec<Symbol>) {
    let text = match layer.direction {
        Direction::Causal => "(ssm fwd)",
        Direction::Reverse => "(rev fwd)",
        Direction::Bidirectional => "(bidir fwd bwd)",
    };
    let params = if layer.direction == Direction::Bidirectional { vec!["fwd", "bwd"] } else { vec!["fwd"] };
    (text.parse().expect("start term is well formed"), params.into_iter().map(Symbol::from).collect())
}

/// Sums the target's estimates of the chosen forms; `ssm`, `rev` and `bidir` must be rewritten.
struct FormCost<'a> {
    egraph: &'a Graph,
    shapes: &'a [Shape],
    machine: cost::Machine,
}

impl FormCost<'_> {
    fn size(&self, id: Id) -> usize {
        self.egraph[id]
            .nodes
            .iter()
            .find_map(|n| if let SsmLang::Size(q) = n { Some(*q as usize) } else { None })
            .unwrap_or(1)
    }

    /// The estimate of `form` over parameter class `p`; infinite where the target has no
    /// native schedule for it, so extraction chooses among forms that can be built.
    fn form_seconds(&self, form: Form, p: Id) -> f64 {
        match self.egraph[p].data {
            Some(f) if f.has_schedule(form) => cost::estimate(form, &self.shapes[f.scan], &self.machine).seconds,
            _ => f64::INFINITY,
        }
    }
}

impl CostFunction<SsmLang> for FormCost<'_> {
    type Cost = f64;

    fn cost<C>(&mut self, enode: &SsmLang, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let own = match enode {
            SsmLang::Ssm(_) | SsmLang::Rev(_) | SsmLang::Bidir(_) => f64::INFINITY,
            SsmLang::Flip(_) | SsmLang::Add(_) | SsmLang::Size(_) | SsmLang::Param(_) => 0.0,
            SsmLang::Recurrent(p) => self.form_seconds(Form::Recurrent, *p),
            SsmLang::Scan(p) => self.form_seconds(Form::Scan, *p),
            SsmLang::Conv(p) => self.form_seconds(Form::Conv, *p),
            SsmLang::Quadratic(p) => self.form_seconds(Form::Quadratic, *p),
            SsmLang::Chunked([p, q]) => self.form_seconds(Form::Chunked { q: self.size(*q) }, *p),
        };
        enode.fold(own, |sum, id| sum + costs(id))
    }
}

/// One candidate form for every scan of the layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The form.
    pub form: Form,
    /// Its estimate summed over the scans, or why it is illegal.
    pub legality: Result<Estimate, String>,
    /// Whether the target has a native schedule for it, or why not.
    pub schedule: Result<(), String>,
}

impl Candidate {
    /// Legal and with a native schedule on the target: a form that can be built.
    pub fn buildable(&self) -> bool {
        self.legality.is_ok() && self.schedule.is_ok()
    }
}

/// What the e-graph found for a layer at given sizes.
#[derive(Clone, Debug)]
pub struct Choice {
    /// The start term.
    pub term: String,
    /// The cheapest equivalent term.
    pub extracted: String,
    /// The forms of the extracted term, per scan: the cheapest that can be built for the
    /// target when some form can, else the cheapest legal one (for the f64 paths).
    pub plan: Plan,
    /// Every form, legal or not.
    pub candidates: Vec<Candidate>,
    /// Size of the saturated e-graph and why it stopped.
    pub stats: String,
}

impl Choice {
    /// The plan that runs `form` on every scan, or why it cannot; `chunked` with q = 0
    /// takes the cheapest legal chunk size.
    pub fn force(&self, form: Form) -> Result<Plan, String> {
        // Every chunk size is as legal as the chunk sizes the e-graph tried.
        let pick = |f: Form| {
            self.candidates.iter().find(|c| c.form == f || (c.form.kind() == f.kind() && f.kind() == "chunked"))
        };
        let chosen = match form {
            Form::Chunked { q: 0 } => self
                .candidates
                .iter()
                .filter(|c| matches!(c.form, Form::Chunked { .. }))
                .min_by(|a, b| seconds(a).total_cmp(&seconds(b)))
                .map(|c| c.form),
            f => Some(f),
        };
        let f = chosen.ok_or("no chunked form")?;
        match pick(f).map(|c| &c.legality) {
            Some(Err(why)) => Err(format!("form {f} is not legal for this layer: {why}")),
            _ => Ok(Plan { forms: vec![f; self.plan.forms.len()] }),
        }
    }
}

fn seconds(c: &Candidate) -> f64 {
    c.legality.as_ref().map_or(f64::INFINITY, |e| e.seconds)
}

/// Saturates the layer's term with [`rules`] and extracts the cheapest form for `target`.
/// `line_of` maps a source span to its line, for the reasons given for illegal forms.
pub fn choose(layer: &Layer, sizes: &Sizes, target: &Target, line_of: &dyn Fn(Span) -> usize) -> Choice {
    let scans = layer.directed_scans();
    let shapes: Vec<Shape> = scans.iter().map(|(s, _)| Shape::of(layer, s, sizes)).collect();
    let (term, symbols) = start_term(layer);
    let layer_facts = LayerFacts::of(layer);
    let schedules: Vec<Result<(), String>> =
        CANDIDATES.iter().map(|f| schedule::available(&layer_facts, &layer.name, *f, target)).collect();
    let mut scheduled = schedules.iter().enumerate().fold(0u16, |m, (i, s)| if s.is_ok() { m | 1 << i } else { m });
    if scheduled == 0 {
        scheduled = u16::MAX;
    }
    let mut facts = Facts::default();
    for (i, (scan, sym)) in layer_facts.scans.iter().zip(&symbols).enumerate() {
        facts.params.insert(*sym, ParamFacts { scan: i, facts: *scan, scheduled });
    }
    let runner = Runner::<SsmLang, Facts>::new(facts)
        .with_node_limit(10_000)
        .with_iter_limit(30)
        .with_time_limit(Duration::from_secs(1))
        .with_expr(&term)
        .run(&rules());
    let root = runner.roots[0];
    let egraph = &runner.egraph;
    let machine = cost::machine(target);
    let extractor = Extractor::new(egraph, FormCost { egraph, shapes: &shapes, machine });
    let (_, best) = extractor.find_best(root);
    let mut plan = plan_of(&best, egraph, scans.len());
    // The parameter class each scan's forms hang off: `fwd`, or `flip` of it when reversed.
    let param_ids: Vec<Option<Id>> = scans
        .iter()
        .zip(&symbols)
        .map(|((_, reversed), sym)| {
            let p = egraph.lookup(SsmLang::Param(*sym))?;
            if *reversed {
                egraph.lookup(SsmLang::Flip(p))
            } else {
                Some(p)
            }
        })
        .collect();
    let candidates: Vec<Candidate> = CANDIDATES
        .iter()
        .zip(schedules)
        .map(|(&form, schedule)| {
            let legal = param_ids.iter().all(|p| p.is_some_and(|p| form_node(egraph, form, p).is_some()));
            let legality = if legal {
                let est =
                    shapes.iter().map(|s| cost::estimate(form, s, &machine)).fold(None, |acc: Option<Estimate>, e| {
                        Some(acc.map_or(e, |a| Estimate {
                            flops: a.flops + e.flops,
                            bytes: a.bytes + e.bytes,
                            depth: a.depth.max(e.depth),
                            seconds: a.seconds + e.seconds,
                        }))
                    });
                Ok(est.expect("a layer has at least one scan"))
            } else {
                Err(illegal_reason(layer, form, line_of))
            };
            Candidate { form, legality, schedule }
        })
        .collect();
    // Native kernels run one form on every scan of a layer: a plan of two forms (a tie
    // broken two ways) becomes the cheapest form that both scans can take.
    if plan.uniform().is_none() {
        let both = candidates.iter().filter(|c| c.legality.is_ok() && (c.schedule.is_ok() || scheduled == u16::MAX));
        if let Some(c) = both.min_by(|a, b| seconds(a).total_cmp(&seconds(b))) {
            plan = Plan { forms: vec![c.form; plan.forms.len()] };
        }
    }
    let stats = format!(
        "{} nodes, {} classes, {} iterations, stopped: {}",
        egraph.total_number_of_nodes(),
        egraph.number_of_classes(),
        runner.iterations.len(),
        match &runner.stop_reason {
            Some(egg::StopReason::Saturated) => "saturated".to_string(),
            Some(egg::StopReason::IterationLimit(n)) => format!("iteration limit {n}"),
            Some(egg::StopReason::NodeLimit(n)) => format!("node limit {n}"),
            Some(egg::StopReason::TimeLimit(t)) => format!("time limit {t} s"),
            Some(egg::StopReason::Other(why)) => why.clone(),
            None => "-".to_string(),
        }
    );
    Choice { term: term.to_string(), extracted: best.to_string(), plan, candidates, stats }
}

/// The e-node of `form` over parameter class `p`, if the rules added it.
fn form_node(egraph: &Graph, form: Form, p: Id) -> Option<Id> {
    let node = match form {
        Form::Recurrent => SsmLang::Recurrent(p),
        Form::Scan => SsmLang::Scan(p),
        Form::Conv => SsmLang::Conv(p),
        Form::Quadratic => SsmLang::Quadratic(p),
        Form::Chunked { q } => SsmLang::Chunked([p, egraph.lookup(SsmLang::Size(q as u32))?]),
    };
    egraph.lookup(node)
}

/// The forms in an extracted term, per scan.
fn plan_of(best: &RecExpr<SsmLang>, egraph: &Graph, scans: usize) -> Plan {
    let nodes = best.as_ref();
    let scan_of = |mut id: Id| loop {
        match &nodes[usize::from(id)] {
            SsmLang::Flip(x) => id = *x,
            SsmLang::Param(s) => return egraph.analysis.params.get(s).map_or(0, |f| f.scan),
            _ => return 0,
        }
    };
    let mut forms = vec![Form::Recurrent; scans];
    for node in nodes {
        let (form, p) = match node {
            SsmLang::Recurrent(p) => (Form::Recurrent, p),
            SsmLang::Scan(p) => (Form::Scan, p),
            SsmLang::Conv(p) => (Form::Conv, p),
            SsmLang::Quadratic(p) => (Form::Quadratic, p),
            SsmLang::Chunked([p, q]) => match &nodes[usize::from(*q)] {
                SsmLang::Size(q) => (Form::Chunked { q: *q as usize }, p),
                _ => continue,
            },
            _ => continue,
        };
        forms[scan_of(*p).min(scans - 1)] = form;
    }
    Plan { forms }
}

fn illegal_reason(layer: &Layer, form: Form, line_of: &dyn Fn(Span) -> usize) -> String {
    match form {
        Form::Conv => {
            let mut sel: Vec<(&str, usize)> = Vec::new();
            for (scan, _) in layer.directed_scans() {
                for (name, span) in layer.selective_roles(scan) {
                    if !sel.iter().any(|(n, _)| *n == name) {
                        sel.push((name, line_of(span)));
                    }
                }
            }
            let names: Vec<String> = sel.iter().map(|(n, l)| format!("{n} (line {l})")).collect();
            let verb = if sel.len() == 1 { "is" } else { "are" };
            format!("{} {verb} selective: the layer is not time-invariant", join_and(&names))
        }
        _ => format!("A is {}, not scalar or diagonal", layer.a_structure.name()),
    }
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saturate(start: &str, params: &[(&str, ParamFacts)]) -> (Graph, Id) {
        let mut facts = Facts::default();
        for (s, f) in params {
            facts.params.insert(Symbol::from(*s), *f);
        }
        let expr: RecExpr<SsmLang> = start.parse().expect("term");
        let runner = Runner::<SsmLang, Facts>::new(facts)
            .with_iter_limit(30)
            .with_node_limit(10_000)
            .with_expr(&expr)
            .run(&rules());
        let root = runner.roots[0];
        (runner.egraph, root)
    }

    fn reaches(start: &str, goal: &str, params: &[(&str, ParamFacts)]) -> bool {
        let (egraph, root) = saturate(start, params);
        let goal: RecExpr<SsmLang> = goal.parse().expect("term");
        egraph.lookup_expr(&goal).is_some_and(|g| egraph.find(g) == egraph.find(root))
    }

    const SCAN: ScanFacts = ScanFacts {
        lti: false,
        selective_decay: true,
        diagonal: true,
        scalar_decay: false,
        complex: false,
        has_dt: true,
    };
    const SELECTIVE: ParamFacts = ParamFacts { scan: 0, facts: SCAN, scheduled: u16::MAX };
    const LTI: ParamFacts = ParamFacts { facts: ScanFacts { lti: true, selective_decay: false, ..SCAN }, ..SELECTIVE };

    #[test]
    fn bidirectional_splits_into_forward_and_flipped_forms() {
        let p = [("fwd", SELECTIVE), ("bwd", ParamFacts { scan: 1, ..SELECTIVE })];
        assert!(reaches("(bidir fwd bwd)", "(+ (chunked fwd 64) (flip (recurrent (flip bwd))))", &p));
        assert!(reaches("(bidir fwd bwd)", "(+ (ssm fwd) (rev bwd))", &p));
    }

    #[test]
    fn flip_flip_is_identity() {
        assert!(reaches("(flip (flip (ssm fwd)))", "(recurrent fwd)", &[("fwd", SELECTIVE)]));
    }

    #[test]
    fn conv_only_for_time_invariant_layers() {
        assert!(reaches("(ssm fwd)", "(conv fwd)", &[("fwd", LTI)]));
        assert!(!reaches("(ssm fwd)", "(conv fwd)", &[("fwd", SELECTIVE)]));
        assert!(reaches("(ssm fwd)", "(quadratic fwd)", &[("fwd", SELECTIVE)]));
    }

    #[test]
    fn scan_and_chunked_need_a_diagonal_a() {
        let dense = ParamFacts { facts: ScanFacts { diagonal: false, ..LTI.facts }, ..LTI };
        assert!(!reaches("(ssm fwd)", "(scan fwd)", &[("fwd", dense)]));
        assert!(!reaches("(ssm fwd)", "(chunked fwd 64)", &[("fwd", dense)]));
        assert!(reaches("(ssm fwd)", "(recurrent fwd)", &[("fwd", dense)]));
    }

    #[test]
    fn rules_md_lists_every_rule() {
        let doc = include_str!("RULES.md");
        for r in rules() {
            assert!(doc.contains(&format!("`{}`", r.name)), "RULES.md lacks `{}`", r.name);
        }
    }
}
