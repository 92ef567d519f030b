// The SDK parses in Speakeasy's "lax" mode: a missing required string becomes "", a missing
// number 0, a null where the schema allows only a value or absence is dropped, an unknown enum
// member is kept. None of that throws, so a call that returns is not yet proof that the answer
// matches the SDK's schema. The SDK counts every such fallback (types/defaultToZeroValue.js,
// types/unrecognized.js); `laxPaths` runs one of its schemas over a raw answer under those
// counters and names each field that needed a fallback, so an answer passes only when the
// schema accepts it as it is.

import { startCountingDefaultToZeroValue } from "@vercel/sdk/types/defaultToZeroValue.js";
import { startCountingUnrecognized } from "@vercel/sdk/types/unrecognized.js";

function measure(schema, value) {
  const zeros = startCountingDefaultToZeroValue();
  const unrecognized = startCountingUnrecognized();
  const result = schema.safeParse(value);
  const lax = zeros.end() + unrecognized.end();
  return { result, lax };
}

// The object, array or record schema under the wrappers the generator puts around it
// (lazy, optional, nullable, and the `optional`/`nullable` helpers' unions); null for anything
// else, smartUnion included (its options live in a closure).
function container(schema) {
  for (let depth = 0; schema && depth < 20; depth += 1) {
    const def = schema._def;
    switch (def.typeName) {
      case "ZodObject":
      case "ZodArray":
      case "ZodRecord":
        return schema;
      case "ZodLazy":
        schema = def.getter();
        break;
      case "ZodOptional":
      case "ZodNullable":
        schema = def.innerType;
        break;
      case "ZodUnion": {
        const inner = def.options.map(container).filter(Boolean);
        if (inner.length !== 1) return null;
        schema = inner[0];
        break;
      }
      default:
        return null;
    }
  }
  return null;
}

function describe(value) {
  if (value === undefined) return "missing";
  if (value === null) return "null";
  return `${JSON.stringify(value)}`.slice(0, 80);
}

/** Every path in `value` that `schema` accepts only through a lax fallback, or fails on. */
export function laxPaths(schema, value, path = "$") {
  const { result, lax } = measure(schema, value);
  if (!result.success) {
    return result.error.issues.map((issue) => `${[path, ...issue.path].join(".")}: ${issue.message}`);
  }
  if (lax === 0) return [];
  const inner = container(schema);
  const found = [];
  if (inner?._def.typeName === "ZodObject" && value && typeof value === "object") {
    for (const [key, field] of Object.entries(inner.shape)) {
      found.push(...laxPaths(field, value[key], `${path}.${key}`));
    }
  } else if (inner?._def.typeName === "ZodArray" && Array.isArray(value)) {
    value.forEach((item, index) => found.push(...laxPaths(inner._def.type, item, `${path}[${index}]`)));
  } else if (inner?._def.typeName === "ZodRecord" && value && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      found.push(...laxPaths(inner._def.valueType, item, `${path}.${key}`));
    }
  }
  return found.length > 0 ? found : [`${path}: ${describe(value)} (accepted only by a lax fallback)`];
}
