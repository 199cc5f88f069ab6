// A typed client of the pcx API: the paths, bodies and answers of openapi/openapi.json, generated
// into schema.d.ts by openapi-typescript (`npm run generate`; `npm run check` fails when it drifts),
// called through openapi-fetch. Every call returns `{data, error, response}`: `error` is the API's
// envelope `{"error": {"code", "message"}}` for 4xx/5xx.
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths };
/** The API's schemas by name (`Schemas["QuoteView"]`, ...). */
export type Schemas = components["schemas"];
/** A pcx client: `client.GET("/v1/oracle/feeds")`, `client.POST("/v1/quotes", {body})`, ... */
export type PcxClient = Client<paths>;

/** Options of [`pcxClient`]. */
export interface PcxClientOptions {
  /** The exchange, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** A bearer token (`POST /v1/auth/token`); a function is asked before each request. */
  token?: string | (() => string | undefined);
  /** Another fetch (tests, proxies). */
  fetch?: typeof fetch;
}

/** A client of the exchange at `options.baseUrl`. */
export function pcxClient(options: PcxClientOptions): PcxClient {
  const client = createClient<paths>({ baseUrl: options.baseUrl, fetch: options.fetch });
  const auth: Middleware = {
    onRequest({ request }) {
      const token = typeof options.token === "function" ? options.token() : options.token;
      if (token) request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
  };
  client.use(auth);
  return client;
}

/** A fresh `Idempotency-Key` for a POST that creates or moves something. */
export function idempotencyKey(): string {
  return crypto.randomUUID();
}
