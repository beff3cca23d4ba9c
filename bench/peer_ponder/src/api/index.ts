// Ponder 0.16 needs an API file; the benchmark only asks /ready.
import { Hono } from "hono";

const app = new Hono();

export default app;
