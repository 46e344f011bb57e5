"""The HTTP routes, one module per group of endpoints. Each route validates, calls one service
(or store) function and shapes the answer; no route module imports another."""
