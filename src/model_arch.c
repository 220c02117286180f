/* model_arch.c: the architecture walk. Keras has written the same MLP in several
 * JSON shapes over the years (Sequential as a bare list or as {"layers": ...};
 * graph models with Keras 2 [[["name", 0, 0, {}]]] or Keras 3 keras_history
 * inbound nodes); this file reduces them all to one ordered layer list, and
 * refuses graphs that are not a single chain, since the engine runs layers one
 * after another. It knows nothing about HDF5 or about what a layer computes. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_arch.h"

#define ERR(...) snprintf(errstr, errstr_size, __VA_ARGS__)

/* Reads {"class_name", "config", "name"} of one layer entry. Graph models put
 * the name beside the config, Sequential models only inside it. */
static int parse_entry(json_t *entry, size_t index, sf_arch_layer *out, const char *origin,
                       char *errstr, size_t errstr_size) {
    json_t *cls = json_object_get(entry, "class_name");
    json_t *config = json_object_get(entry, "config");
    json_t *name = json_object_get(entry, "name");
    if (!json_is_string(name))
        name = json_object_get(config, "name");
    if (!json_is_string(cls) || !json_is_object(config) || !json_is_string(name)) {
        ERR("%s: layer #%zu: expected class_name, config and name", origin, index + 1);
        return -1;
    }
    out->name = json_string_value(name);
    out->keras_class = json_string_value(cls);
    out->config = config;
    return 0;
}

/* Shapes look like [null, 30]; with_batch says whether the first entry is the
 * batch dimension. Only the rank and the last dimension matter to us. */
static int parse_shape(sf_arch *a, json_t *shape, int with_batch, size_t layer,
                       const char *origin, char *errstr, size_t errstr_size) {
    size_t n = json_array_size(shape);
    if (!json_is_array(shape) || n <= (size_t)with_batch)
        goto bad;
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_null(d) && (!json_is_integer(d) || json_integer_value(d) <= 0))
            goto bad;
    }
    json_t *last = json_array_get(shape, n - 1);
    a->input_rank = n - (size_t)with_batch;
    a->input_width = json_is_integer(last) ? (size_t)json_integer_value(last) : 0;
    a->input_layer = layer;
    return 0;
bad:
    ERR("%s: layer '%s' (%s): malformed input shape", origin, a->layers[layer].name,
        a->layers[layer].keras_class);
    return -1;
}

/* The input shape sits in the first layer's config under a name that depends on
 * the Keras version; Keras 3 Sequential may keep it at the model level. */
static int find_input_shape(sf_arch *a, json_t *model_config, const char *origin,
                            char *errstr, size_t errstr_size) {
    json_t *c = a->layers[0].config, *s;
    if ((s = json_object_get(c, "batch_input_shape")) && !json_is_null(s))
        return parse_shape(a, s, 1, 0, origin, errstr, errstr_size);
    if ((s = json_object_get(c, "batch_shape")) && !json_is_null(s))
        return parse_shape(a, s, 1, 0, origin, errstr, errstr_size);
    if ((s = json_object_get(c, "input_shape")) && !json_is_null(s)) {
        /* Keras' input_shape omits the batch; tolerate [null, n] written with it. */
        int with_batch = json_array_size(s) == 2 && json_is_null(json_array_get(s, 0));
        return parse_shape(a, s, with_batch, 0, origin, errstr, errstr_size);
    }
    if ((s = json_object_get(model_config, "build_input_shape")) && !json_is_null(s))
        return parse_shape(a, s, 1, 0, origin, errstr, errstr_size);
    return 0;
}

static long find_layer(const sf_arch_layer *v, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].name, name))
            return (long)i;
    return -1;
}

/* Keras 3's naming.to_snake_case: drop non-word characters, then
 * re.sub("(.)([A-Z][a-z]+)", r"\1_\2") and re.sub("([a-z])([A-Z])", r"\1_\2"),
 * lowercased ("BatchNormalization" -> "batch_normalization", "LeakyReLU" ->
 * "leaky_re_lu"). Keras 2.15's variant gives the same for every class we load. */
static char *snake_case(const char *cls) {
    size_t n = 0, len = strlen(cls);
    char *w = malloc(len + 1), *a = malloc(2 * len + 1), *b = malloc(4 * len + 1);
    if (!w || !a || !b) {
        free(w);
        free(a);
        free(b);
        return NULL;
    }
    for (size_t i = 0; i < len; i++)
        if (isalnum((unsigned char)cls[i]) || cls[i] == '_')
            w[n++] = cls[i];
    w[n] = '\0';
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (i + 2 < n && isupper((unsigned char)w[i + 1]) && islower((unsigned char)w[i + 2])) {
            size_t j = i + 2;
            while (j < n && islower((unsigned char)w[j]))
                j++;
            a[k++] = w[i];
            a[k++] = '_';
            memcpy(a + k, w + i + 1, j - i - 1);
            k += j - i - 1;
            i = j;
        } else {
            a[k++] = w[i++];
        }
    }
    a[k] = '\0';
    size_t m = 0;
    for (size_t i = 0; i < k;) {
        if (i + 1 < k && islower((unsigned char)a[i]) && isupper((unsigned char)a[i + 1])) {
            b[m++] = a[i];
            b[m++] = '_';
            b[m++] = a[i + 1];
            i += 2;
        } else {
            b[m++] = a[i++];
        }
    }
    b[m] = '\0';
    for (size_t i = 0; i < m; i++)
        b[i] = (char)tolower((unsigned char)b[i]);
    free(w);
    free(a);
    return b;
}

/* Gives each entry of one model's layer list (in list order, as Keras walks
 * model.layers) its store path: prefix + "layers/" + snake_case(class), with
 * "_1", "_2", ... for the second and later layers of the same class. */
static int name_store_paths(sf_arch_layer *v, size_t n, const char *prefix, const char *origin,
                            char *errstr, size_t errstr_size) {
    char **snake = calloc(n ? n : 1, sizeof *snake);
    int rc = -1;
    if (!snake)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        if (!(snake[i] = snake_case(v[i].keras_class)))
            goto oom;
        size_t same = 0;
        for (size_t j = 0; j < i; j++)
            same += !strcmp(snake[j], snake[i]);
        size_t size = strlen(prefix) + strlen(snake[i]) + 32;
        if (!(v[i].store_path = malloc(size)))
            goto oom;
        if (same)
            snprintf(v[i].store_path, size, "%slayers/%s_%zu", prefix, snake[i], same);
        else
            snprintf(v[i].store_path, size, "%slayers/%s", prefix, snake[i]);
    }
    rc = 0;
    goto done;
oom:
    ERR("%s: out of memory", origin);
done:
    for (size_t i = 0; snake && i < n; i++)
        free(snake[i]);
    free(snake);
    return rc;
}

static int is_model_class(const char *cls) {
    return !strcmp(cls, "Sequential") || !strcmp(cls, "Functional") || !strcmp(cls, "Model");
}

/* Appends one layer to the flattened chain; takes its store_path. */
static int append_layer(sf_arch *a, sf_arch_layer *l, int nested, const char *origin,
                        char *errstr, size_t errstr_size) {
    sf_arch_layer *bigger = realloc(a->layers, (a->n_layers + 1) * sizeof *a->layers);
    if (!bigger) {
        ERR("%s: out of memory", origin);
        return -1;
    }
    a->layers = bigger;
    a->layers[a->n_layers] = *l;
    a->layers[a->n_layers].nested = nested;
    a->n_layers++;
    l->store_path = NULL;
    return 0;
}

static int parse_model(sf_arch *a, const char *cls, json_t *config, const char *prefix,
                       int depth, const char *origin, char *errstr, size_t errstr_size);

/* A nested model's layers go where the model sits in the chain. */
static int append_entry(sf_arch *a, sf_arch_layer *l, int depth, const char *origin,
                        char *errstr, size_t errstr_size) {
    if (!is_model_class(l->keras_class))
        return append_layer(a, l, depth > 0, origin, errstr, errstr_size);
    if (depth >= 8) {
        ERR("%s: layer '%s' (%s): models nested more than 8 deep", origin, l->name,
            l->keras_class);
        return -1;
    }
    size_t size = strlen(l->store_path) + 2;
    char *prefix = malloc(size);
    if (!prefix) {
        ERR("%s: out of memory", origin);
        return -1;
    }
    snprintf(prefix, size, "%s/", l->store_path);
    int rc = parse_model(a, l->keras_class, l->config, prefix, depth + 1, origin, errstr,
                         errstr_size);
    free(prefix);
    return rc;
}

static void free_entries(sf_arch_layer *v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i].store_path);
    free(v);
}

static int parse_sequential(sf_arch *a, json_t *config, const char *prefix, int depth,
                            const char *origin, char *errstr, size_t errstr_size) {
    json_t *list = json_is_array(config) ? config : json_object_get(config, "layers");
    if (!json_is_array(list) || json_array_size(list) == 0) {
        ERR("%s: Sequential model without layers", origin);
        return -1;
    }
    size_t n = json_array_size(list);
    int rc = -1;
    sf_arch_layer *all = calloc(n, sizeof *all);
    if (!all) {
        ERR("%s: out of memory", origin);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (parse_entry(json_array_get(list, i), i, &all[i], origin, errstr, errstr_size) < 0)
            goto done;
        if (find_layer(all, i, all[i].name) >= 0) {
            ERR("%s: layer name '%s' appears twice", origin, all[i].name);
            goto done;
        }
    }
    if (name_store_paths(all, n, prefix, origin, errstr, errstr_size) < 0)
        goto done;
    for (size_t i = 0; i < n; i++)
        if (append_entry(a, &all[i], depth, origin, errstr, errstr_size) < 0)
            goto done;
    rc = 0;
done:
    free_entries(all, n);
    return rc;
}

/* Counts the layers feeding one inbound node and remembers the first. Keras 2
 * nodes are lists of ["name", node, tensor, {kwargs}]; Keras 3 nodes are
 * {"args": [...], "kwargs": {...}} holding tensors with config.keras_history. */
static void collect_inbound(json_t *v, const char **first, size_t *count) {
    if (json_is_array(v)) {
        json_t *head = json_array_get(v, 0);
        if (json_is_string(head) && json_is_integer(json_array_get(v, 1))) {
            if ((*count)++ == 0)
                *first = json_string_value(head);
            return;
        }
        for (size_t i = 0; i < json_array_size(v); i++)
            collect_inbound(json_array_get(v, i), first, count);
    } else if (json_is_object(v)) {
        json_t *history = json_object_get(json_object_get(v, "config"), "keras_history");
        if (json_is_string(json_array_get(history, 0))) {
            if ((*count)++ == 0)
                *first = json_string_value(json_array_get(history, 0));
            return;
        }
        const char *key;
        json_t *child;
        json_object_foreach(v, key, child)
            collect_inbound(child, first, count);
    }
}

/* input_layers / output_layers: [["name", 0, 0]] or, for one tensor, ["name", 0, 0]. */
static const char *single_endpoint(json_t *list, const char *field, const char *origin,
                                   char *errstr, size_t errstr_size) {
    if (json_is_string(json_array_get(list, 0)))
        return json_string_value(json_array_get(list, 0));
    if (json_array_size(list) == 1 && json_is_string(json_array_get(json_array_get(list, 0), 0)))
        return json_string_value(json_array_get(json_array_get(list, 0), 0));
    if (json_is_array(list))
        ERR("%s: model has %zu %s; only a single chain with one input and one output is supported",
            origin, json_array_size(list), field);
    else
        ERR("%s: model config has no usable %s", origin, field);
    return NULL;
}

/* Graph models: walk back from the output along each layer's single inbound
 * layer; the walk must end at the input and visit every layer. */
static int parse_functional(sf_arch *a, json_t *config, const char *prefix, int depth,
                            const char *origin, char *errstr, size_t errstr_size) {
    int rc = -1;
    json_t *list = json_object_get(config, "layers");
    size_t n = json_array_size(list);
    sf_arch_layer *all = calloc(n ? n : 1, sizeof *all);
    size_t *chain = calloc(n ? n : 1, sizeof *chain);
    const char **inbound = calloc(n ? n : 1, sizeof *inbound); /* NULL: none */
    unsigned char *seen = calloc(n ? n : 1, 1);
    if (!all || !inbound || !seen || !chain) {
        ERR("%s: out of memory", origin);
        goto done;
    }
    if (n == 0) {
        ERR("%s: model without layers", origin);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *entry = json_array_get(list, i);
        if (parse_entry(entry, i, &all[i], origin, errstr, errstr_size) < 0)
            goto done;
        if (find_layer(all, i, all[i].name) >= 0) {
            ERR("%s: layer name '%s' appears twice", origin, all[i].name);
            goto done;
        }
        json_t *nodes = json_object_get(entry, "inbound_nodes");
        size_t count = 0;
        if (json_array_size(nodes) > 1) {
            ERR("%s: layer '%s' (%s): called %zu times (shared layer); only a single chain "
                "is supported", origin, all[i].name, all[i].keras_class, json_array_size(nodes));
            goto done;
        }
        collect_inbound(json_array_get(nodes, 0), &inbound[i], &count);
        if (count > 1) {
            ERR("%s: layer '%s' (%s): has %zu inbound layers; only a single chain is supported",
                origin, all[i].name, all[i].keras_class, count);
            goto done;
        }
    }
    const char *in_name = single_endpoint(json_object_get(config, "input_layers"),
                                          "input_layers", origin, errstr, errstr_size);
    const char *out_name = in_name ? single_endpoint(json_object_get(config, "output_layers"),
                                                     "output_layers", origin, errstr, errstr_size)
                                   : NULL;
    if (!out_name)
        goto done;
    long cur = find_layer(all, n, out_name);
    if (cur < 0) {
        ERR("%s: output layer '%s' is not among the layers", origin, out_name);
        goto done;
    }
    if (name_store_paths(all, n, prefix, origin, errstr, errstr_size) < 0)
        goto done;
    /* Fill from the back: the output is the last layer to run. */
    size_t k = n;
    for (;;) {
        if (seen[cur]) {
            ERR("%s: layer '%s' (%s): its inbound layers form a cycle", origin, all[cur].name,
                all[cur].keras_class);
            goto done;
        }
        seen[cur] = 1;
        chain[--k] = (size_t)cur;
        if (!inbound[cur])
            break;
        long prev = find_layer(all, n, inbound[cur]);
        if (prev < 0) {
            ERR("%s: layer '%s' (%s): inbound layer '%s' does not exist", origin, all[cur].name,
                all[cur].keras_class, inbound[cur]);
            goto done;
        }
        cur = prev;
    }
    if (strcmp(all[cur].name, in_name) != 0) {
        ERR("%s: the chain from output '%s' starts at '%s', not at input '%s'", origin, out_name,
            all[cur].name, in_name);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (!seen[i]) {
            ERR("%s: layer '%s' (%s): not on the path from '%s' to '%s'; only a single chain "
                "is supported", origin, all[i].name, all[i].keras_class, in_name, out_name);
            goto done;
        }
    }
    for (; k < n; k++)
        if (append_entry(a, &all[chain[k]], depth, origin, errstr, errstr_size) < 0)
            goto done;
    rc = 0;
done:
    free_entries(all, n);
    free(chain);
    free(inbound);
    free(seen);
    return rc;
}

static int parse_model(sf_arch *a, const char *cls, json_t *config, const char *prefix,
                       int depth, const char *origin, char *errstr, size_t errstr_size) {
    if (!strcmp(cls, "Sequential"))
        return parse_sequential(a, config, prefix, depth, origin, errstr, errstr_size);
    if (!strcmp(cls, "Model") || !strcmp(cls, "Functional"))
        return parse_functional(a, config, prefix, depth, origin, errstr, errstr_size);
    ERR("%s: unsupported model class '%s' (expected Sequential, Model or Functional)", origin,
        cls);
    return -1;
}

int sf_arch_parse(sf_arch *a, const char *text, size_t len, const char *origin,
                  char *errstr, size_t errstr_size) {
    memset(a, 0, sizeof *a);
    json_error_t jerr;
    a->root = json_loadb(text, len, 0, &jerr);
    if (!a->root) {
        ERR("%s: invalid architecture JSON at line %d column %d: %s", origin, jerr.line,
            jerr.column, jerr.text);
        return -1;
    }
    json_t *cls = json_object_get(a->root, "class_name");
    json_t *config = json_object_get(a->root, "config");
    const char *c = json_string_value(cls);
    const char *version = json_string_value(json_object_get(a->root, "keras_version"));
    a->keras3 = version ? version[0] == '3' : json_object_get(a->root, "module") != NULL;
    int rc;
    if (!c) {
        ERR("%s: architecture JSON has no class_name", origin);
        rc = -1;
    } else {
        rc = parse_model(a, c, config, "", 0, origin, errstr, errstr_size);
    }
    if (rc == 0)
        rc = find_input_shape(a, json_is_object(config) ? config : NULL, origin, errstr,
                              errstr_size);
    if (rc < 0)
        sf_arch_free(a);
    return rc;
}

void sf_arch_free(sf_arch *a) {
    free_entries(a->layers, a->n_layers);
    json_decref(a->root);
    memset(a, 0, sizeof *a);
}
