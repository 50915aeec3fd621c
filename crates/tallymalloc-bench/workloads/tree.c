/* A tree of objects built and walked (Barnes-Hut style): every step builds a quadtree over
 * the bodies, computes centres of mass, walks it for every body's force, and frees it. */
#include <math.h>
#include "common.h"

typedef struct node {
  double x, y, size, mass, cx, cy;
  struct node *child[4];
  int body;
} node;

typedef struct {
  double x, y, vx, vy;
} body;

static node *node_new(double x, double y, double size) {
  node *n = must(calloc(1, sizeof *n));
  n->x = x;
  n->y = y;
  n->size = size;
  n->body = -1;
  return n;
}

static void insert(node *n, const body *bodies, int b, int depth) {
  if (n->mass == 0 && n->body < 0 && !n->child[0] && !n->child[1] && !n->child[2] && !n->child[3]) {
    n->body = b;
    n->mass = 1;
    return;
  }
  if (depth > 40) return;
  if (n->body >= 0) {
    int old = n->body;
    n->body = -1;
    insert(n, bodies, old, depth);
  }
  double half = n->size / 2;
  int q = (bodies[b].x >= n->x + half) + 2 * (bodies[b].y >= n->y + half);
  if (!n->child[q])
    n->child[q] = node_new(n->x + (q & 1) * half, n->y + (q >> 1) * half, half);
  insert(n->child[q], bodies, b, depth + 1);
  n->mass += 1;
}

static void centre(node *n, const body *bodies) {
  if (n->body >= 0) {
    n->cx = bodies[n->body].x;
    n->cy = bodies[n->body].y;
    return;
  }
  double mx = 0, my = 0, m = 0;
  for (int i = 0; i < 4; i++) {
    if (!n->child[i]) continue;
    centre(n->child[i], bodies);
    mx += n->child[i]->cx * n->child[i]->mass;
    my += n->child[i]->cy * n->child[i]->mass;
    m += n->child[i]->mass;
  }
  if (m > 0) {
    n->cx = mx / m;
    n->cy = my / m;
  }
}

static void force(const node *n, const body *b, double *fx, double *fy) {
  double dx = n->cx - b->x, dy = n->cy - b->y, d2 = dx * dx + dy * dy + 1e-3;
  if (n->body >= 0 || n->size * n->size < 0.25 * d2) {
    double f = n->mass / (d2 * sqrt(d2));
    *fx += f * dx;
    *fy += f * dy;
    return;
  }
  for (int i = 0; i < 4; i++)
    if (n->child[i]) force(n->child[i], b, fx, fy);
}

static void release(node *n) {
  for (int i = 0; i < 4; i++)
    if (n->child[i]) release(n->child[i]);
  free(n);
}

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  int count = 4000;
  uint64_t state = 0x9E3779B97F4A7C15ull;
  body *bodies = must(malloc(sizeof(body) * (size_t)count));
  for (int i = 0; i < count; i++) {
    bodies[i].x = (double)(next_random(&state) % 1000000) / 1000000;
    bodies[i].y = (double)(next_random(&state) % 1000000) / 1000000;
    bodies[i].vx = bodies[i].vy = 0;
  }
  double energy = 0;
  for (long step = 0; step < scale * 2; step++) {
    node *root = node_new(0, 0, 1);
    for (int i = 0; i < count; i++) insert(root, bodies, i, 0);
    centre(root, bodies);
    for (int i = 0; i < count; i++) {
      double fx = 0, fy = 0;
      force(root, &bodies[i], &fx, &fy);
      bodies[i].vx += fx * 1e-9;
      bodies[i].vy += fy * 1e-9;
    }
    for (int i = 0; i < count; i++) {
      bodies[i].x = fmod(fabs(bodies[i].x + bodies[i].vx), 1.0);
      bodies[i].y = fmod(fabs(bodies[i].y + bodies[i].vy), 1.0);
      energy += bodies[i].vx * bodies[i].vx + bodies[i].vy * bodies[i].vy;
    }
    release(root);
  }
  free(bodies);
  printf("tree %.6e\n", energy);
  return 0;
}
