//! circom's witness generator: the `.wasm` a circuit compiles to, run in an interpreter
//! ([`wasmi`], which is built for untrusted code: validated on load, metered with fuel, its
//! memory capped) to turn input signals into the full witness.
//!
//! The interface (circom 2.x, as its own `witness_calculator.js` drives it): the module imports
//! `runtime.exceptionHandler(code)`, `runtime.printErrorMessage()`,
//! `runtime.writeBufferMessage()` and `runtime.showSharedRWMemory()`, and exports
//! `getVersion`, `getFieldNumLen32`, `getRawPrime`, `readSharedRWMemory`,
//! `writeSharedRWMemory`, `init`, `getInputSignalSize`, `setInputSignal`, `getInputSize`,
//! `getWitnessSize`, `getWitness` and `getMessageChar`. Field elements cross the boundary as
//! 32-bit limbs through a shared buffer, least significant first. An input signal is addressed by
//! the 64-bit FNV-1a hash of its qualified name (`in`, `a.b`, `c[1].d`), split in two 32-bit
//! halves, and set one array element at a time.
//!
//! Inputs follow snarkjs' `input.json`: an object of signals; a value is a number, a decimal or
//! `0x` hex string (reduced modulo r like snarkjs does, so `-1` is r - 1), or a nested array of
//! them for array signals; a nested object is a bus whose fields are `name.field`.

use ark_bn254::Fr;
use ark_ff::{BigInt, PrimeField};
use serde_json::Value;
use wasmi::{Caller, Config, Engine, Extern, Instance, Linker, Module, Store, StoreLimits, StoreLimitsBuilder};

/// Bounds for one witness computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitnessLimits {
    /// Fuel (about one unit per WebAssembly instruction).
    pub fuel: u64,
    /// Linear memory, in bytes.
    pub memory_bytes: usize,
}

impl Default for WitnessLimits {
    /// 2^38 instructions (minutes of interpretation, far beyond any circuit we trade) and 2 GiB.
    fn default() -> Self {
        WitnessLimits { fuel: 1 << 38, memory_bytes: 2 << 30 }
    }
}

/// Why a wasm is not a circom witness generator for BN254.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WasmError {
    /// Not valid WebAssembly.
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
    /// An import or export of the circom interface is missing or has another type.
    #[error("{0}")]
    NotCircom(String),
    /// The witness generator's field is not BN254's scalar field.
    #[error("the witness generator computes over the prime {0}, not BN254's scalar field: compile with circom's default `--prime bn128`")]
    WrongPrime(String),
    /// Instantiating or initialising it failed.
    #[error("the witness generator failed to start: {0}")]
    Start(String),
}

/// Why no witness could be computed from an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The input is not a JSON object of signals with numeric values.
    #[error("{0}")]
    Shape(String),
    /// A signal the circuit does not have.
    #[error("the circuit has no input signal `{0}`")]
    UnknownSignal(String),
    /// An array signal with another number of values.
    #[error("input signal `{signal}` takes {expected} value(s); got {got}")]
    WrongLength {
        /// Qualified signal name.
        signal: String,
        /// Values the circuit expects.
        expected: u32,
        /// Values given.
        got: usize,
    },
    /// Some input signals were not given.
    #[error("{given} input values were given; the circuit needs {needed} (every input signal must be set)")]
    MissingInputs {
        /// Values set.
        given: u32,
        /// Values the circuit has.
        needed: u32,
    },
    /// The circuit's own code refused the input (an `assert` or a `===` that does not hold).
    #[error("the circuit rejects this input: {0}")]
    Rejected(String),
    /// The computation ran out of its budget (fuel or memory).
    #[error("computing the witness exceeded its budget: {0}")]
    Budget(String),
    /// The witness generator trapped for another reason.
    #[error("the witness generator failed: {0}")]
    Trap(String),
}

/// A compiled witness generator, shared by every witness computation of its circuit.
#[derive(Debug, Clone)]
pub struct WitnessGenerator {
    engine: Engine,
    module: Module,
    limits: WitnessLimits,
    /// The major version of the circom that compiled it.
    pub circom_version: u32,
    /// The whole version (`2.2.2`), or the major alone when the module does not say more.
    pub circom_version_full: String,
    /// Witness values (wires) the generator writes.
    pub witness_size: u32,
    /// Input values the circuit takes (all array elements of all input signals).
    pub input_size: u32,
}

/// Per-computation state the host functions see.
struct Host {
    /// The code circom passed to `exceptionHandler`, if it called it.
    exception: Option<i32>,
    /// What the circuit printed through `printErrorMessage` (e.g. the failing template and line).
    errors: String,
    limits: StoreLimits,
}

/// Messages longer than this are cut (a hostile module could print forever).
const MAX_MESSAGE_CHARS: usize = 4096;
/// 32-bit limbs of a BN254 field element.
const LIMBS: u32 = 8;
/// The exports the circom interface needs.
const EXPORTS: [&str; 12] = [
    "getVersion",
    "getFieldNumLen32",
    "getRawPrime",
    "readSharedRWMemory",
    "writeSharedRWMemory",
    "init",
    "getInputSignalSize",
    "setInputSignal",
    "getInputSize",
    "getWitnessSize",
    "getWitness",
    "getMessageChar",
];
/// The imports the runtime provides (all in module `runtime`).
const IMPORTS: [&str; 4] = ["exceptionHandler", "printErrorMessage", "writeBufferMessage", "showSharedRWMemory"];

impl WitnessGenerator {
    /// Compiles and checks `wasm` with the default limits.
    pub fn new(wasm: &[u8]) -> Result<WitnessGenerator, WasmError> {
        Self::with_limits(wasm, WitnessLimits::default())
    }

    /// Compiles and checks `wasm`: valid WebAssembly, the circom interface, BN254's prime.
    pub fn with_limits(wasm: &[u8], limits: WitnessLimits) -> Result<WitnessGenerator, WasmError> {
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, wasm).map_err(|e| WasmError::Invalid(e.to_string()))?;
        for import in module.imports() {
            if import.module() != "runtime" || !IMPORTS.contains(&import.name()) {
                return Err(WasmError::NotCircom(format!(
                    "the wasm imports `{}.{}`, which is not part of circom's witness runtime; upload the `.wasm` \
                     circom writes under `<circuit>_js/`",
                    import.module(),
                    import.name()
                )));
            }
        }
        let exported: Vec<&str> = module.exports().map(|e| e.name()).collect();
        if let Some(missing) = EXPORTS.iter().find(|name| !exported.contains(name)) {
            return Err(WasmError::NotCircom(format!(
                "the wasm does not export `{missing}` of circom's witness interface; upload the `.wasm` circom writes \
                 under `<circuit>_js/` (circom 2)"
            )));
        }
        let mut generator =
            WitnessGenerator { engine, module, limits, circom_version: 0, circom_version_full: String::new(), witness_size: 0, input_size: 0 };
        let (mut store, instance) = generator.instantiate().map_err(|e| WasmError::Start(e.to_string()))?;
        let call = |store: &mut Store<Host>, name: &str| -> Result<i32, WasmError> {
            instance
                .get_typed_func::<(), i32>(&*store, name)
                .and_then(|f| f.call(&mut *store, ()))
                .map_err(|e| WasmError::NotCircom(format!("`{name}` does not behave as circom's: {e}")))
        };
        generator.circom_version = call(&mut store, "getVersion")? as u32;
        // circom 2.1+ also exports its minor and patch versions; older ones do not.
        let part = |store: &mut Store<Host>, name: &str| {
            instance.get_typed_func::<(), i32>(&*store, name).ok().and_then(|f| f.call(&mut *store, ()).ok())
        };
        generator.circom_version_full = match (part(&mut store, "getMinorVersion"), part(&mut store, "getPatchVersion")) {
            (Some(minor), Some(patch)) => format!("{}.{minor}.{patch}", generator.circom_version),
            _ => generator.circom_version.to_string(),
        };
        let limbs = call(&mut store, "getFieldNumLen32")?;
        if limbs != LIMBS as i32 {
            return Err(WasmError::WrongPrime(format!("of {} bits", i64::from(limbs) * 32)));
        }
        instance
            .get_typed_func::<(), ()>(&store, "getRawPrime")
            .and_then(|f| f.call(&mut store, ()))
            .map_err(|e| WasmError::NotCircom(format!("`getRawPrime` failed: {e}")))?;
        let prime = read_shared(&instance, &mut store).map_err(|e| WasmError::NotCircom(e.to_string()))?;
        if prime != Fr::MODULUS {
            return Err(WasmError::WrongPrime(prime.to_string()));
        }
        generator.witness_size = call(&mut store, "getWitnessSize")? as u32;
        generator.input_size = call(&mut store, "getInputSize")? as u32;
        Ok(generator)
    }

    fn instantiate(&self) -> Result<(Store<Host>, Instance), wasmi::Error> {
        let host = Host {
            exception: None,
            errors: String::new(),
            limits: StoreLimitsBuilder::new().memory_size(self.limits.memory_bytes).build(),
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|host| &mut host.limits);
        store.set_fuel(self.limits.fuel)?;
        let mut linker = Linker::<Host>::new(&self.engine);
        linker.func_wrap("runtime", "exceptionHandler", |mut caller: Caller<'_, Host>, code: i32| {
            caller.data_mut().exception = Some(code);
            Err::<(), _>(wasmi::Error::new(format!("circom exception {code}")))
        })?;
        linker.func_wrap("runtime", "printErrorMessage", |mut caller: Caller<'_, Host>| {
            let message = read_message(&mut caller);
            let errors = &mut caller.data_mut().errors;
            if errors.len() < MAX_MESSAGE_CHARS {
                errors.push_str(message.trim_end());
                errors.push('\n');
            }
        })?;
        linker.func_wrap("runtime", "writeBufferMessage", |mut caller: Caller<'_, Host>| {
            // The circuit's `log(...)` output: drained so the buffer does not grow, not shown.
            let _ = read_message(&mut caller);
        })?;
        linker.func_wrap("runtime", "showSharedRWMemory", |_: Caller<'_, Host>| {})?;
        let instance = linker.instantiate_and_start(&mut store, &self.module)?;
        Ok((store, instance))
    }

    /// Computes the witness for `input` (snarkjs' `input.json` shape). The result has
    /// [`Self::witness_size`] values and starts with the one; it satisfies the circuit's own
    /// asserts, not necessarily its constraints (check those against the r1cs).
    pub fn compute(&self, input: &Value) -> Result<Vec<Fr>, WitnessError> {
        let signals = flatten_input(input)?;
        let (mut store, instance) = self.instantiate().map_err(|e| WitnessError::Trap(e.to_string()))?;
        let typed = |store: &Store<Host>, name: &str| {
            instance.get_typed_func::<(i32, i32), i32>(store, name).map_err(|e| WitnessError::Trap(e.to_string()))
        };
        let init = instance.get_typed_func::<i32, ()>(&store, "init").map_err(|e| WitnessError::Trap(e.to_string()))?;
        // Sanity checks on: circom then refuses reading a signal before it is assigned.
        init.call(&mut store, 1).map_err(|e| failure(&store, e))?;
        let signal_size = typed(&store, "getInputSignalSize")?;
        let set_signal = instance
            .get_typed_func::<(i32, i32, i32), ()>(&store, "setInputSignal")
            .map_err(|e| WitnessError::Trap(e.to_string()))?;
        let write = instance
            .get_typed_func::<(i32, i32), ()>(&store, "writeSharedRWMemory")
            .map_err(|e| WitnessError::Trap(e.to_string()))?;
        let mut given: u32 = 0;
        for (name, values) in &signals {
            let hash = fnv1a_64(name);
            let (msb, lsb) = ((hash >> 32) as u32 as i32, hash as u32 as i32);
            let size = signal_size.call(&mut store, (msb, lsb)).map_err(|e| failure(&store, e))?;
            // circom answers 0 (older versions -1) for a name it does not know; no signal is empty.
            if size <= 0 {
                return Err(WitnessError::UnknownSignal(name.clone()));
            }
            if values.len() != size as usize {
                return Err(WitnessError::WrongLength { signal: name.clone(), expected: size as u32, got: values.len() });
            }
            for (i, value) in values.iter().enumerate() {
                let limbs = value.into_bigint().to_u32_limbs();
                for (j, limb) in limbs.iter().enumerate() {
                    write.call(&mut store, (j as i32, *limb as i32)).map_err(|e| failure(&store, e))?;
                }
                set_signal.call(&mut store, (msb, lsb, i as i32)).map_err(|e| failure(&store, e))?;
                given += 1;
            }
        }
        if given < self.input_size {
            return Err(WitnessError::MissingInputs { given, needed: self.input_size });
        }
        let get_witness =
            instance.get_typed_func::<i32, ()>(&store, "getWitness").map_err(|e| WitnessError::Trap(e.to_string()))?;
        let mut witness = Vec::with_capacity(self.witness_size as usize);
        for i in 0..self.witness_size {
            get_witness.call(&mut store, i as i32).map_err(|e| failure(&store, e))?;
            let raw = read_shared(&instance, &mut store).map_err(|e| failure(&store, e))?;
            let value = Fr::from_bigint(raw)
                .ok_or_else(|| WitnessError::Trap(format!("witness value {i} is not below the field modulus")))?;
            witness.push(value);
        }
        Ok(witness)
    }
}

/// Turns a trap into what the user needs to know: circom's exception (with what the circuit
/// printed, e.g. `Error in template Multiplier_0 line: 12`), fuel or memory, or the trap itself.
fn failure(store: &Store<Host>, error: wasmi::Error) -> WitnessError {
    let host = store.data();
    let printed = host.errors.trim();
    let detail = |what: &str| match printed.is_empty() {
        true => what.to_owned(),
        false => format!("{what} ({})", printed.replace('\n', "; ")),
    };
    match host.exception {
        Some(1) => WitnessError::Shape(detail("an input signal was not found")),
        Some(2) => WitnessError::Shape(detail("too many values for an input signal")),
        Some(3) => WitnessError::Shape(detail("an input signal was set twice")),
        Some(4) => WitnessError::Rejected(detail("an assert or constraint of the circuit fails")),
        Some(5) => WitnessError::Budget(detail("the circuit ran out of memory")),
        Some(6) => WitnessError::Rejected(detail("an array index is out of bounds")),
        Some(code) => WitnessError::Trap(detail(&format!("circom exception {code}"))),
        None if error.as_trap_code() == Some(wasmi::TrapCode::OutOfFuel) => {
            WitnessError::Budget("it ran out of fuel (too many instructions)".into())
        }
        None if error.as_trap_code() == Some(wasmi::TrapCode::GrowthOperationLimited) => {
            WitnessError::Budget("it asked for more memory than allowed".into())
        }
        None => WitnessError::Trap(detail(&error.to_string())),
    }
}

/// Reads the shared buffer's field element (least significant limb first).
fn read_shared(instance: &Instance, store: &mut Store<Host>) -> Result<BigInt<4>, wasmi::Error> {
    let read = instance.get_typed_func::<i32, i32>(&*store, "readSharedRWMemory")?;
    let mut limbs = [0u32; LIMBS as usize];
    for (j, limb) in limbs.iter_mut().enumerate() {
        *limb = read.call(&mut *store, j as i32)? as u32;
    }
    Ok(bigint_from_u32_limbs(&limbs))
}

/// Drains circom's message buffer (`getMessageChar` until 0), at most [`MAX_MESSAGE_CHARS`].
fn read_message(caller: &mut Caller<'_, Host>) -> String {
    let Some(get_char) = caller.get_export("getMessageChar").and_then(Extern::into_func) else {
        return String::new();
    };
    let Ok(get_char) = get_char.typed::<(), i32>(&*caller) else {
        return String::new();
    };
    let mut message = String::new();
    while message.len() < MAX_MESSAGE_CHARS {
        match get_char.call(&mut *caller, ()) {
            Ok(c) if c > 0 => message.push(char::from_u32(c as u32).unwrap_or('?')),
            _ => break,
        }
    }
    message
}

/// 64-bit FNV-1a, how circom addresses input signals by name.
pub fn fnv1a_64(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

trait U32Limbs {
    fn to_u32_limbs(&self) -> [u32; LIMBS as usize];
}

impl U32Limbs for BigInt<4> {
    fn to_u32_limbs(&self) -> [u32; LIMBS as usize] {
        let mut out = [0u32; LIMBS as usize];
        for (i, limb) in self.0.iter().enumerate() {
            out[2 * i] = *limb as u32;
            out[2 * i + 1] = (*limb >> 32) as u32;
        }
        out
    }
}

fn bigint_from_u32_limbs(limbs: &[u32; LIMBS as usize]) -> BigInt<4> {
    let mut out = [0u64; 4];
    for (i, word) in out.iter_mut().enumerate() {
        *word = u64::from(limbs[2 * i]) | (u64::from(limbs[2 * i + 1]) << 32);
    }
    BigInt(out)
}

/// The longest text accepted for one input value (a 254-bit number has 77 decimal digits).
const MAX_VALUE_CHARS: usize = 100;

/// snarkjs' `qualify_input`: the input object as (qualified signal name, values) pairs, arrays
/// flattened in row-major order.
pub fn flatten_input(input: &Value) -> Result<Vec<(String, Vec<Fr>)>, WitnessError> {
    let Value::Object(_) = input else {
        return Err(WitnessError::Shape(
            "the input must be a JSON object of input signals, as in snarkjs' input.json".into(),
        ));
    };
    let mut out = Vec::new();
    qualify("", input, &mut out)?;
    Ok(out)
}

fn qualify(prefix: &str, value: &Value, out: &mut Vec<(String, Vec<Fr>)>) -> Result<(), WitnessError> {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                let name = match prefix.is_empty() {
                    true => key.clone(),
                    false => format!("{prefix}.{key}"),
                };
                qualify(&name, field, out)?;
            }
            Ok(())
        }
        // An array of buses: each element is qualified with its index.
        Value::Array(items) if items.first().is_some_and(contains_object) => {
            for (i, item) in items.iter().enumerate() {
                qualify(&format!("{prefix}[{i}]"), item, out)?;
            }
            Ok(())
        }
        _ => {
            let mut values = Vec::new();
            flatten_values(prefix, value, &mut values)?;
            out.push((prefix.to_owned(), values));
            Ok(())
        }
    }
}

fn contains_object(value: &Value) -> bool {
    match value {
        Value::Object(_) => true,
        Value::Array(items) => items.first().is_some_and(contains_object),
        _ => false,
    }
}

fn flatten_values(signal: &str, value: &Value, out: &mut Vec<Fr>) -> Result<(), WitnessError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|item| flatten_values(signal, item, out)),
        other => {
            out.push(parse_value(signal, other)?);
            Ok(())
        }
    }
}

/// One input value: an integer number, or a decimal (optionally negative) or `0x` hex string,
/// reduced modulo r as snarkjs does.
pub fn parse_value(signal: &str, value: &Value) -> Result<Fr, WitnessError> {
    let bad = |why: &str| WitnessError::Shape(format!("input signal `{signal}`: {why}"));
    let text = match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(_) => return Err(bad("a number must be an integer; write large values as decimal strings")),
        Value::String(s) => s.trim().to_owned(),
        Value::Bool(_) | Value::Null => return Err(bad("values must be integers or strings of digits")),
        Value::Array(_) | Value::Object(_) => return Err(bad("a value nests where a number was expected")),
    };
    if text.len() > MAX_VALUE_CHARS {
        return Err(bad(&format!("a value has {} characters; at most {MAX_VALUE_CHARS}", text.len())));
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (radix, digits) = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => (16u32, hex),
        None => (10u32, digits),
    };
    if digits.is_empty() {
        return Err(bad(&format!("{text:?} is not a number")));
    }
    let base = Fr::from(u64::from(radix));
    let mut acc = Fr::from(0u64);
    for c in digits.chars() {
        let digit = c.to_digit(radix).ok_or_else(|| bad(&format!("{text:?} is not a number")))?;
        acc = acc * base + Fr::from(u64::from(digit));
    }
    Ok(if negative { -acc } else { acc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv_matches_circom() {
        // FNV-1a 64 of "" is its offset basis; of "a" a published test vector.
        assert_eq!(fnv1a_64(""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64("a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn inputs_flatten_like_snarkjs() {
        let input = json!({"a": 3, "in": [["1", "0x10"], [-1, "2"]], "bus": {"x": "5", "y": [6]}});
        let flat = flatten_input(&input).unwrap();
        let names: Vec<&str> = flat.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "bus.x", "bus.y", "in"]);
        let in_values = &flat[3].1;
        assert_eq!(in_values, &[Fr::from(1u64), Fr::from(16u64), -Fr::from(1u64), Fr::from(2u64)]);
        let buses = flatten_input(&json!({"p": [{"x": 1}, {"x": 2}]})).unwrap();
        assert_eq!(buses[1].0, "p[1].x");
        // Reduced modulo r, like snarkjs.
        let r = Fr::MODULUS.to_string();
        assert_eq!(parse_value("a", &json!(r)).unwrap(), Fr::from(0u64));
    }

    #[test]
    fn bad_values_say_which_signal() {
        for bad in [json!(1.5), json!("12a"), json!(true), json!(""), json!("-"), json!("9".repeat(101))] {
            let err = flatten_input(&json!({ "x": bad })).unwrap_err();
            assert!(err.to_string().contains("`x`"), "{err}");
        }
        assert!(flatten_input(&json!([1, 2])).is_err());
    }

    #[test]
    fn non_circom_wasm_is_refused() {
        assert!(matches!(WitnessGenerator::new(b"not wasm"), Err(WasmError::Invalid(_))));
        // The empty module is valid WebAssembly but exports nothing of the interface.
        let empty = b"\0asm\x01\0\0\0";
        assert!(matches!(WitnessGenerator::new(empty), Err(WasmError::NotCircom(_))));
    }
}
