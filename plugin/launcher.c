/* The exec'd `calico` / `calico-ipam`: plugin/shim.py's fast path in C.
 *
 * A runtime execs the plugin once per pod and network; `python -S` alone takes ~16 ms to
 * start, this takes ~1 ms. It speaks the shim's protocol to the same agent socket
 * (plugin/shim.py has the wire format): the request is byte for byte what
 * `encode_request(build_request(...))` makes, the reply is copied out verbatim and its
 * exit code becomes ours.
 *
 * Before the agent has the request (CALICO_CNI_SOCKET="", no socket, nobody listening,
 * any connect failure) we exec the Python launcher installed beside us as `.<plugin>-py`,
 * stdin unread, so the shim's own rules (retry the socket, else run in-process) apply
 * unchanged. After a successful connect we never do: a broken conversation is the shim's
 * error 11, in the same words (tests/unit/test_launcher.py holds the two in sync).
 *
 * Build: cc -O2 -o calico plugin/launcher.c (plugin/build_launcher.py does it). libc only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/calico/cni.sock"
#define DEFAULT_TIMEOUT 60.0
#define FALLBACK_VERSION "1.1.0"    /* plugin/errors.py FALLBACK_VERSION */
#define MAX_DEPTH 500               /* deeper stdin JSON: cniVersion not looked for */
#define MAX_INT_DIGITS 4300         /* Python's int() refuses longer literals */

extern char **environ;

typedef struct { char *p; size_t n, cap; } buf;

static void put(buf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        if (!(b->p = realloc(b->p, b->cap))) _exit(70);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* One character as Python's strict UTF-8 decoder reads it: its length, or 0 for a byte it
 * rejects, which surrogateescape turns into U+DC00+byte (in *cp). */
static size_t utf8(const unsigned char *s, size_t n, unsigned *cp) {
    size_t len = s[0] < 0x80 ? 1 : s[0] < 0xc2 ? 0 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : s[0] < 0xf5 ? 4 : 0;
    static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
    *cp = len == 1 ? s[0] : s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if (i >= n || (s[i] & 0xc0) != 0x80) len = 0;
        else *cp = *cp << 6 | (s[i] & 0x3f);
    }
    if (!len || *cp < min[len] || *cp > 0x10ffff || (*cp >= 0xd800 && *cp < 0xe000)) {
        *cp = 0xdc00 + s[0];
        return 0;
    }
    return len;
}

/* One character in a JSON string. ascii=0: shim._json_str (quote, backslash, controls and
 * surrogates as \u escapes, the rest raw UTF-8); ascii=1: json.dumps' ensure_ascii form. */
static void jchar(buf *b, unsigned cp, const unsigned char *raw, size_t len, int ascii) {
    char e[16] = {(char)cp};
    const char *shortform = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\" : !ascii ? NULL
        : cp == '\n' ? "\\n" : cp == '\r' ? "\\r" : cp == '\t' ? "\\t" : cp == '\b' ? "\\b"
        : cp == '\f' ? "\\f" : NULL;
    if (shortform) puts_(b, shortform);
    else if (cp >= 0x20 && cp < 0x7f) put(b, e, 1);
    else if (!ascii && len && cp >= 0x20) put(b, raw, len); /* valid UTF-8 and DEL, as they came */
    else if (cp > 0xffff)
        snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10),
                 0xdc00 + ((cp - 0x10000) & 0x3ff)), puts_(b, e);
    else snprintf(e, sizeof e, "\\u%04x", cp), puts_(b, e);
}

static void jstr(buf *b, const char *s, size_t n, int ascii) {
    put(b, "\"", 1);
    for (size_t i = 0, len; i < n; i += len ? len : 1) {
        unsigned cp;
        len = utf8((const unsigned char *)s + i, n - i, &cp);
        jchar(b, cp, (const unsigned char *)s + i, len, ascii);
    }
    put(b, "\"", 1);
}

/* ---- stdin's cniVersion, as shim.error_reply finds it with json.loads -------------- */

static const char *J, *JE; /* cursor and end of the JSON text */
static buf version;        /* the top-level "cniVersion" string, re-encoded; n=0: none */

static void ws(void) { while (J < JE && strchr(" \t\n\r", *J) && *J) J++; }
static int lit(const char *w) {
    size_t n = strlen(w);
    if ((size_t)(JE - J) < n || memcmp(J, w, n)) return 0;
    return J += n, 1;
}
static int digits(void) { const char *s = J; while (J < JE && *J >= '0' && *J <= '9') J++; return J > s; }

static int jstring(buf *out) { /* out: the value in ensure_ascii form, quoted */
    if (J >= JE || *J++ != '"') return 0;
    if (out) out->n = 0, put(out, "\"", 1);
    while (J < JE) {
        unsigned cp = (unsigned char)*J, len = 0;
        if (cp == '"') {
            if (out) put(out, "\"", 1);
            return J++, 1;
        }
        if (cp < 0x20) return 0;
        if (cp == '\\') {
            if (++J >= JE) return 0;
            const char *esc = strchr("\"\\/bfnrtu", *J), *map = "\"\\/\b\f\n\r\t";
            if (!*J || !esc) return 0;
            cp = (unsigned char)map[esc - "\"\\/bfnrtu"];
            if (*J++ == 'u') {
                char hex[5] = {0}, *end;
                if (JE - J < 4) return 0;
                memcpy(hex, J, 4);
                cp = strtoul(hex, &end, 16);
                if (end != hex + 4 || strpbrk(hex, "+- \t\n\v\f\rxX")) return 0;
                J += 4;
            }
        } else {
            len = utf8((const unsigned char *)J, JE - J, &cp);
            J += len ? len : 1;
        }
        if (out) jchar(out, cp, (const unsigned char *)J - len, len, 1);
    }
    return 0;
}

static int jvalue(int depth) {
    if (J >= JE || depth > MAX_DEPTH) return 0;
    char open = *J, close = open == '{' ? '}' : ']';
    if (open == '{' || open == '[') {
        J++, ws();
        if (J < JE && *J == close) return J++, 1;
        for (;;) {
            int is_version = 0;
            if (open == '{') {
                buf key = {0};
                int ok = jstring(depth == 0 ? &key : NULL);
                is_version = ok && key.n == 12 && !memcmp(key.p, "\"cniVersion\"", 12);
                free(key.p), ws();
                if (!ok || J >= JE || *J++ != ':') return 0;
                ws();
            }
            if (is_version && J < JE && *J == '"') { if (!jstring(&version)) return 0; }
            else if (version.n = is_version ? 0 : version.n, !jvalue(depth + 1)) return 0;
            ws();
            if (J < JE && *J == close) return J++, 1;
            if (J >= JE || *J++ != ',') return 0;
            ws();
        }
    }
    if (open == '"') return jstring(NULL);
    if (lit("null") || lit("true") || lit("false") || lit("NaN") || lit("Infinity") || lit("-Infinity"))
        return 1;
    if (*J == '-') J++;
    const char *start = J;
    if (J < JE && *J == '0') J++;
    else if (!digits()) return 0;
    int is_int = 1;
    if (JE - J > 1 && *J == '.' && J[1] >= '0' && J[1] <= '9') J++, digits(), is_int = 0;
    if (J < JE && (*J == 'e' || *J == 'E')) {
        const char *e = J++;
        if (J < JE && (*J == '+' || *J == '-')) J++;
        if (digits()) is_int = 0;
        else J = e;
    }
    return !is_int || J - start <= MAX_INT_DIGITS;
}

static void find_version(const char *s, size_t n) {
    J = s, JE = s + n, version.n = 0;
    ws();
    int object = J < JE && *J == '{';
    if (!jvalue(0) || (ws(), J != JE) || !object) version.n = 0;
}

/* ---- replies ------------------------------------------------------------------------ */

static void write_all(int fd, const char *p, size_t n) {
    for (ssize_t w; n; p += w, n -= w)
        if ((w = write(fd, p, n)) < 0 && errno != EINTR) return;
        else if (w < 0) w = 0;
}

/* plugin/errors.py error_reply: the spec's error JSON (json.dumps indent=4) on stdout, the
 * message on stderr, exit 1. */
static void fail(int code, const char *msg, const char *details, const buf *in) {
    buf out = {0}, err = {0};
    char c[32];
    find_version(in->p ? in->p : "", in->n);
    puts_(&out, "{\n    \"cniVersion\": ");
    if (version.n) put(&out, version.p, version.n);
    else puts_(&out, "\"" FALLBACK_VERSION "\"");
    snprintf(c, sizeof c, ",\n    \"code\": %d,\n    \"msg\": ", code);
    puts_(&out, c), jstr(&out, msg, strlen(msg), 1);
    puts_(&out, ",\n    \"details\": "), jstr(&out, details, strlen(details), 1);
    puts_(&out, "\n}\n");
    puts_(&err, msg), puts_(&err, ": "), puts_(&err, details), puts_(&err, "\n");
    write_all(1, out.p, out.n), write_all(2, err.p, err.n);
    exit(1);
}

static void read_fd(int fd, buf *b) { /* to EOF; an unreadable stdin reads as empty */
    char chunk[65536];
    for (ssize_t r; (r = read(fd, chunk, sizeof chunk)) != 0;)
        if (r > 0) put(b, chunk, r);
        else if (errno != EINTR) return;
}

static char details[8192];

static void agent_failed(const char *path, const buf *in) { /* errno says why */
    if (errno == EAGAIN || errno == EWOULDBLOCK) /* SO_RCVTIMEO: Python's TimeoutError */
        snprintf(details, sizeof details, "talking to the agent at %s: timed out", path);
    else snprintf(details, sizeof details, "talking to the agent at %s: [Errno %d] %s", path, errno, strerror(errno));
    fail(11, "node agent did not answer", details, in);
}

static void malformed(const char *path, const char *why, const buf *in) {
    snprintf(details, sizeof details, "the agent at %s sent a malformed reply: %s", path, why);
    fail(11, "node agent did not answer", details, in);
}

static void fallback(const char *plugin, char **argv) {
    char self[4096] = "", target[4200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) self[n] = 0;
    else if (argv[0]) snprintf(self, sizeof self, "%s", argv[0]);
    char *slash = strrchr(self, '/');
    snprintf(target, sizeof target, "%.*s/.%s-py", slash ? (int)(slash - self) : 1, slash ? self : ".", plugin);
    execv(target, argv);
    buf in = {0};
    snprintf(details, sizeof details, "%s: [Errno %d] %s", target, errno, strerror(errno));
    read_fd(0, &in);
    fail(100, "plugin implementation not importable", details, &in);
}

int main(int argc, char **argv) {
    static char *no_args[] = {"calico", NULL};
    if (argc < 1 || !argv[0]) argv = no_args;
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    const char *plugin = strcmp(name, "calico-ipam") ? "calico" : "calico-ipam";
    const char *path = getenv("CALICO_CNI_SOCKET"), *t = getenv("CALICO_AGENT_TIMEOUT");
    if (!path) path = DEFAULT_SOCKET;
    char *end = NULL;
    double timeout = t && !strpbrk(t, "xX") ? strtod(t, &end) : 0;
    while (end && *end && strchr(" \t\n\v\f\r", *end)) end++;
    if (!end || *end || !isfinite(timeout) || timeout <= 0) timeout = DEFAULT_TIMEOUT;
    if (timeout > 1e9) timeout = 1e9;

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t plen = strlen(path);
    int fd = -1;
    if (plen && plen <= sizeof sa.sun_path && (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0) {
        struct timeval tv = {.tv_sec = (time_t)timeout, .tv_usec = (timeout - (time_t)timeout) * 1e6};
        memcpy(sa.sun_path, path, plen);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&sa, offsetof(struct sockaddr_un, sun_path) + plen) < 0)
            close(fd), fd = -1;
    }
    if (fd < 0) fallback(plugin, argv); /* the agent has nothing yet: the shim decides */

    /* shim.encode_request(shim.build_request(plugin, os.environ, stdin)) */
    buf in = {0}, req = {0}, reply = {0};
    read_fd(0, &in);
    puts_(&req, "{\"plugin\":"), jstr(&req, plugin, strlen(plugin), 0), puts_(&req, ",\"env\":{");
    int first = 1;
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t klen = eq ? (size_t)(eq - *e) : 0;
        if (!eq || (strncmp(*e, "CNI_", 4) && strncmp(*e, "CALICO_", 7) && strncmp(*e, "ETCD_", 5)))
            continue;
        char **seen = environ; /* os.environ keeps a name's first entry */
        while (seen < e && (strncmp(*seen, *e, klen + 1))) seen++;
        if (seen < e) continue;
        if (!first) put(&req, ",", 1);
        first = 0;
        jstr(&req, *e, klen, 0), put(&req, ":", 1), jstr(&req, eq + 1, strlen(eq + 1), 0);
    }
    puts_(&req, "},\"stdin\":"), jstr(&req, in.p ? in.p : "", in.n, 0), put(&req, "}", 1);

    for (size_t off = 0; off < req.n;) {
        ssize_t w = send(fd, req.p + off, req.n - off, MSG_NOSIGNAL);
        if (w < 0 && errno != EINTR) agent_failed(path, &in);
        off += w > 0 ? w : 0;
    }
    if (shutdown(fd, SHUT_WR) < 0) agent_failed(path, &in);
    char chunk[65536];
    for (ssize_t r; (r = recv(fd, chunk, sizeof chunk, 0)) != 0;)
        if (r > 0) put(&reply, chunk, r);
        else if (errno != EINTR) agent_failed(path, &in);
    close(fd);

    /* shim.decode_reply: "CNI-REPLY <exit> <n_out> <n_err>\n" <stdout> <stderr> */
    char *nl = reply.n ? memchr(reply.p, '\n', reply.n) : NULL, *f[4], *p;
    long long v[3];
    int nf = 0;
    if (nl && !memchr(reply.p, 0, nl - reply.p)) {
        *nl = 0;
        for (p = reply.p; nf < 4; nf++, p++) {
            f[nf] = p, p = strchr(p, ' ');
            if (!p) { nf++; break; }
            *p = 0;
        }
        if (p) nf = 5; /* more than four fields */
    }
    if (nf != 4 || strcmp(f[0], "CNI-REPLY")) malformed(path, "no reply header", &in);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        v[i] = strtoll(f[i + 1], &end, 10);
        if (errno || end == f[i + 1] || *end || strchr(" \t\n\v\f\r", *f[i + 1]))
            malformed(path, "no reply header", &in); /* Python words this as int()'s error */
    }
    size_t body = reply.n - (nl + 1 - reply.p);
    if (v[1] < 0 || v[2] < 0 || (unsigned long long)(v[1] + v[2]) != body) {
        char why[128];
        snprintf(why, sizeof why, "reply body is %zu bytes, header says %lld", body, v[1] + v[2]);
        malformed(path, why, &in);
    }
    write_all(1, nl + 1, v[1]);
    write_all(2, nl + 1 + v[1], v[2]);
    return (int)v[0];
}
