/* A small iterative XML reader. It accepts what AWS Query services send (declaration, comments,
 * namespaces, attributes, entities, CDATA) and rejects everything else rather than guessing:
 * DTDs, mismatched or missing close tags, unknown entities, NUL bytes, a second root. */
#include "xml.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

struct xml_frame {
	struct xml_node *node;
	struct xml_node *last_child;
	const char *qname; /* points into the input, for matching the close tag */
	size_t qlen;
	struct buf text; /* reused by every element at this depth; each node gets an exact copy */
};

struct xml_parser {
	const char *s;
	size_t len;
	size_t pos;
	size_t nodes, max_nodes;
	struct xml_frame stack[XML_MAX_DEPTH];
	size_t depth;
	size_t frames_used; /* stack[0 .. frames_used) hold text buffers to free */
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_name_start(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':' ||
	       c >= 0x80;
}

static bool is_name_char(unsigned char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static bool starts_with(const struct xml_parser *p, const char *lit)
{
	size_t n = strlen(lit);

	return p->len - p->pos >= n && memcmp(p->s + p->pos, lit, n) == 0;
}

/* Advance past the first occurrence of lit; -EBADMSG when the input ends first. */
static int skip_past(struct xml_parser *p, const char *lit)
{
	size_t n = strlen(lit);

	while (p->len - p->pos >= n) {
		if (memcmp(p->s + p->pos, lit, n) == 0) {
			p->pos += n;
			return 0;
		}
		p->pos++;
	}
	return -EBADMSG;
}

static bool all_space(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_space(s[i]))
			return false;
	return true;
}

static void skip_spaces(struct xml_parser *p)
{
	while (p->pos < p->len && is_space(p->s[p->pos]))
		p->pos++;
}

static int utf8_append(struct buf *b, uint32_t cp)
{
	char u[4];
	size_t n;

	if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return -EBADMSG;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	return buf_append(b, u, n);
}

/* At '&': decode one reference into b. */
static int decode_entity(struct xml_parser *p, struct buf *b)
{
	static const struct {
		const char *name;
		char c;
	} named[] = {{"lt", '<'}, {"gt", '>'}, {"amp", '&'}, {"quot", '"'}, {"apos", '\''}};
	const char *start = p->s + p->pos + 1;
	const char *semi;
	size_t max = p->len - p->pos - 1, n, i;
	uint32_t cp = 0;
	unsigned base = 10, digits = 0, d;

	/* Names and numbers here are short; a missing ';' within 12 bytes is malformed. */
	semi = memchr(start, ';', max < 12 ? max : 12);
	if (!semi)
		return -EBADMSG;
	n = (size_t)(semi - start);
	p->pos += n + 2;
	if (n >= 2 && start[0] == '#') {
		i = 1;
		if (start[1] == 'x') {
			base = 16;
			i = 2;
		}
		for (; i < n; i++) {
			char c = start[i];

			if (c >= '0' && c <= '9')
				d = (unsigned)(c - '0');
			else if (base == 16 && c >= 'a' && c <= 'f')
				d = (unsigned)(c - 'a' + 10);
			else if (base == 16 && c >= 'A' && c <= 'F')
				d = (unsigned)(c - 'A' + 10);
			else
				return -EBADMSG;
			cp = cp * base + d;
			if (cp > 0x10FFFF)
				return -EBADMSG;
			digits++;
		}
		if (!digits)
			return -EBADMSG;
		return utf8_append(b, cp);
	}
	for (i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		if (strlen(named[i].name) == n && memcmp(named[i].name, start, n) == 0)
			return buf_append(b, &named[i].c, 1);
	return -EBADMSG;
}

/* Text up to the next '<'; appended to the current element, or only whitespace outside one. */
static int parse_text(struct xml_parser *p)
{
	struct buf *b = p->depth ? &p->stack[p->depth - 1].text : NULL;
	size_t run;
	int r;

	while (p->pos < p->len && p->s[p->pos] != '<') {
		char c = p->s[p->pos];

		if (c == '\0')
			return -EBADMSG;
		if (!b) {
			if (!is_space(c))
				return -EBADMSG;
			p->pos++;
			continue;
		}
		if (c == '&') {
			r = decode_entity(p, b);
			if (r < 0)
				return r;
			continue;
		}
		run = 0;
		while (p->pos + run < p->len && p->s[p->pos + run] != '<' &&
		       p->s[p->pos + run] != '&' && p->s[p->pos + run] != '\0')
			run++;
		r = buf_append(b, p->s + p->pos, run);
		if (r < 0)
			return r;
		p->pos += run;
	}
	return 0;
}

static int parse_name(struct xml_parser *p, const char **name, size_t *nlen)
{
	size_t start = p->pos;

	if (p->pos >= p->len || !is_name_start((unsigned char)p->s[p->pos]))
		return -EBADMSG;
	while (p->pos < p->len && is_name_char((unsigned char)p->s[p->pos]))
		p->pos++;
	*name = p->s + start;
	*nlen = p->pos - start;
	return 0;
}

/* Attributes are skipped, but must still be well formed: name = "value" or 'value'. */
static int skip_attributes(struct xml_parser *p)
{
	const char *name, *q;
	size_t nlen;
	char quote;
	int r;

	for (;;) {
		size_t before = p->pos;

		skip_spaces(p);
		if (p->pos >= p->len)
			return -EBADMSG;
		if (p->s[p->pos] == '>' || p->s[p->pos] == '/')
			return 0;
		if (p->pos == before)
			return -EBADMSG; /* attributes need whitespace before them */
		r = parse_name(p, &name, &nlen);
		if (r < 0)
			return r;
		skip_spaces(p);
		if (p->pos >= p->len || p->s[p->pos] != '=')
			return -EBADMSG;
		p->pos++;
		skip_spaces(p);
		if (p->pos >= p->len || (p->s[p->pos] != '"' && p->s[p->pos] != '\''))
			return -EBADMSG;
		quote = p->s[p->pos++];
		q = memchr(p->s + p->pos, quote, p->len - p->pos);
		if (!q || memchr(p->s + p->pos, '<', (size_t)(q - (p->s + p->pos))) ||
		    memchr(p->s + p->pos, '\0', (size_t)(q - (p->s + p->pos))))
			return -EBADMSG;
		p->pos = (size_t)(q - p->s) + 1;
	}
}

static int open_element(struct xml_parser *p, struct xml_node **root)
{
	struct xml_node *n;
	struct xml_frame *f;
	const char *name, *local, *colon;
	size_t nlen;
	int r;

	p->pos++; /* '<' */
	r = parse_name(p, &name, &nlen);
	if (r < 0)
		return r;
	if (p->depth == 0 && *root)
		return -EBADMSG; /* a second root element */
	if (p->depth >= XML_MAX_DEPTH || p->nodes >= p->max_nodes)
		return -E2BIG;
	r = skip_attributes(p);
	if (r < 0)
		return r;
	local = name;
	colon = memchr(name, ':', nlen);
	while (colon) {
		local = colon + 1;
		colon = memchr(local, ':', nlen - (size_t)(local - name));
	}
	if (local == name + nlen)
		return -EBADMSG; /* "<p:>": a prefix without a local name */

	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	p->nodes++;
	n->name = strndup(local, nlen - (size_t)(local - name));
	if (!n->name) {
		free(n);
		return -ENOMEM;
	}
	/* Link first, so the tree owns the node whatever happens next. */
	if (p->depth == 0) {
		*root = n;
	} else {
		f = &p->stack[p->depth - 1];
		if (f->last_child)
			f->last_child->next = n;
		else
			f->node->child = n;
		f->last_child = n;
	}

	if (p->s[p->pos] == '/') {
		if (p->pos + 1 >= p->len || p->s[p->pos + 1] != '>')
			return -EBADMSG;
		p->pos += 2;
		n->text = strdup("");
		return n->text ? 0 : -ENOMEM;
	}
	p->pos++; /* '>' */
	f = &p->stack[p->depth++];
	f->node = n;
	f->last_child = NULL;
	f->qname = name;
	f->qlen = nlen;
	/* Text can never be longer than the input it came from. The buffer's memory stays with the
	 * frame for the next element at this depth. */
	if (p->depth > p->frames_used) {
		buf_init(&f->text, p->len + 1);
		p->frames_used = p->depth;
	}
	buf_reset(&f->text);
	return 0;
}

static int close_element(struct xml_parser *p)
{
	struct xml_frame *f;
	const char *name;
	size_t nlen;
	int r;

	p->pos += 2; /* "</" */
	r = parse_name(p, &name, &nlen);
	if (r < 0)
		return r;
	if (p->depth == 0)
		return -EBADMSG;
	f = &p->stack[p->depth - 1];
	if (nlen != f->qlen || memcmp(name, f->qname, nlen) != 0)
		return -EBADMSG;
	skip_spaces(p);
	if (p->pos >= p->len || p->s[p->pos] != '>')
		return -EBADMSG;
	p->pos++;
	/* The indentation between an element's children is not its text: a large document
	 * would keep megabytes of it. */
	if (f->node->child && all_space(f->text.data, f->text.len))
		buf_reset(&f->text);
	/* An exact copy: a buffer sized for growth would cost every leaf hundreds of bytes. */
	f->node->text = strndup(f->text.data ? f->text.data : "", f->text.len);
	if (!f->node->text)
		return -ENOMEM;
	p->depth--;
	return 0;
}

static int parse_cdata(struct xml_parser *p)
{
	const char *start;
	size_t n;

	if (p->depth == 0)
		return -EBADMSG;
	p->pos += 9; /* "<![CDATA[" */
	start = p->s + p->pos;
	if (skip_past(p, "]]>") < 0)
		return -EBADMSG;
	n = (size_t)(p->s + p->pos - 3 - start);
	if (memchr(start, '\0', n))
		return -EBADMSG;
	return buf_append(&p->stack[p->depth - 1].text, start, n);
}

int xml_parse(const char *s, size_t len, struct xml_node **root)
{
	return xml_parse_limit(s, len, XML_MAX_NODES, root);
}

int xml_parse_limit(const char *s, size_t len, size_t max_nodes, struct xml_node **root)
{
	struct xml_parser *p;
	int r = 0;

	*root = NULL;
	if (!s)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->s = s;
	p->len = len;
	p->max_nodes = max_nodes ? max_nodes : XML_MAX_NODES;
	if (starts_with(p, "\xEF\xBB\xBF"))
		p->pos = 3;

	while (p->pos < p->len) {
		if (p->s[p->pos] != '<')
			r = parse_text(p);
		else if (starts_with(p, "<!--"))
			r = skip_past(p, "-->");
		else if (starts_with(p, "<?"))
			r = skip_past(p, "?>");
		else if (starts_with(p, "<![CDATA["))
			r = parse_cdata(p);
		else if (starts_with(p, "<!"))
			r = -EBADMSG; /* DOCTYPE and friends: no DTDs, no entity expansion */
		else if (starts_with(p, "</"))
			r = close_element(p);
		else
			r = open_element(p, root);
		if (r < 0)
			goto out;
	}
	if (!*root || p->depth != 0)
		r = -EBADMSG; /* empty, or truncated inside an element */
out:
	for (size_t i = 0; i < p->frames_used; i++)
		buf_free(&p->stack[i].text);
	free(p);
	if (r < 0) {
		xml_free(*root);
		*root = NULL;
	}
	return r;
}

void xml_free(struct xml_node *root)
{
	struct xml_node *next;

	/* Depth is bounded by XML_MAX_DEPTH, so recursing on children is safe. */
	while (root) {
		next = root->next;
		xml_free(root->child);
		free(root->name);
		free(root->text);
		free(root);
		root = next;
	}
}

struct xml_node *xml_child(const struct xml_node *n, const char *name)
{
	struct xml_node *c;

	if (!n || !name)
		return NULL;
	for (c = n->child; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

struct xml_node *xml_path(const struct xml_node *n, const char *path)
{
	const struct xml_node *cur = n;
	struct xml_node *c;
	const char *seg = path, *slash;
	size_t slen;

	if (!n || !path)
		return NULL;
	while (*seg) {
		slash = strchr(seg, '/');
		slen = slash ? (size_t)(slash - seg) : strlen(seg);
		for (c = cur->child; c; c = c->next)
			if (strlen(c->name) == slen && memcmp(c->name, seg, slen) == 0)
				break;
		if (!c)
			return NULL;
		cur = c;
		seg += slen;
		if (*seg == '/')
			seg++;
	}
	return (struct xml_node *)cur;
}

const char *xml_text(const struct xml_node *n, const char *path)
{
	const struct xml_node *x = xml_path(n, path);

	return x ? x->text : NULL;
}
