/**
 * The KMIP XML encoding as used by the OASIS test cases: one element per item named by its tag,
 * `type` and `value` attributes (`<Operation type="Enumeration" value="Get"/>`), structures as elements
 * with children, unknown tags as `<TTLV tag="0x540001" type=... value=.../>`. A file holds several
 * messages under a root element (`<KMIP>`); `# TIME n` text between them is ignored.
 */
import { createRequire } from 'node:module';
import { DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP } from './binary.js';
import { TtlvError, TtlvErrorCode } from './errors.js';
import { PLACEHOLDER, Placeholders } from './placeholders.js';
import { tagCode, tagLabel, tagName } from './registry.js';
import { ItemType, type TtlvItem } from './types.js';
import { TYPE_NAMES, attributeNameOf, formatValue, parseValue, typeCode, valueTag } from './values.js';

export interface XmlOptions {
  /** Placeholder values and stand-ins (see placeholders.ts); without it, non-text placeholders are refused. */
  placeholders?: Placeholders;
  /** Deepest nesting accepted when reading. Default 32, as for binary. */
  maxDepth?: number;
}

type XmlNode = { [name: string]: XmlNode[] | string | Record<string, string> | undefined } & {
  ':@'?: Record<string, string>;
  '#text'?: string;
};

type Fxp = typeof import('fast-xml-parser');
let xml: { validator: Fxp['XMLValidator']; parser: InstanceType<Fxp['XMLParser']> } | undefined;

/**
 * fast-xml-parser, loaded on first read: the standalone KMIP package has no dependencies and lists it
 * as an optional peer, so only users of the XML form install it. Writing XML needs no parser.
 */
function xmlReader(): NonNullable<typeof xml> {
  if (xml) return xml;
  let fxp: Fxp;
  try {
    fxp = createRequire(import.meta.url)('fast-xml-parser') as Fxp;
  } catch {
    throw new TtlvError(
      TtlvErrorCode.XmlParserMissing,
      'reading the KMIP XML form needs the fast-xml-parser package: npm install fast-xml-parser',
    );
  }
  xml = { validator: fxp.XMLValidator, parser: new fxp.XMLParser(PARSER_OPTIONS) };
  return xml;
}

const PARSER_OPTIONS = {
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseAttributeValue: false,
  parseTagValue: false,
  // Attribute values are taken raw and unescaped here: the parser would trim them and skip &#xA;.
  trimValues: false,
  processEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  commentPropName: '#comment',
};

const syntax = (reason: string): TtlvError => new TtlvError(TtlvErrorCode.BadSyntax, reason);

function unescape(text: string, path: () => string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_, ref: string) => {
    switch (ref) {
      case 'amp':
        return '&';
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
    }
    const code = ref[1] === 'x' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    if (!isXmlChar(code))
      throw new TtlvError(TtlvErrorCode.BadSyntax, `${path()}: character reference &${ref}; is not allowed in XML`);
    return String.fromCodePoint(code);
  });
}

function isXmlChar(code: number): boolean {
  return (
    code === 0x9 ||
    code === 0xa ||
    code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff)
  );
}

function elementName(node: XmlNode): string | undefined {
  return Object.keys(node).find((k) => k !== ':@' && k !== '#text' && k !== '#comment');
}

function toItem(
  node: XmlNode,
  path: string,
  depth: number,
  attributeName: string | undefined,
  opts: XmlOptions,
): TtlvItem {
  const name = elementName(node) as string;
  const attrs = node[':@'] ?? {};
  const here = `${path}/${name}`;
  const where = (): string => here;
  const maxDepth = Math.min(opts.maxDepth ?? DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP);
  if (depth > maxDepth) throw new TtlvError(TtlvErrorCode.TooDeep, `${here}: nested deeper than ${maxDepth}`);
  let tag: number | undefined;
  if (name === 'TTLV') {
    const raw = attrs.tag ?? '';
    tag = /^0x[0-9a-fA-F]{6}$/.test(raw) ? parseInt(raw, 16) : undefined;
    if (tag === undefined)
      throw new TtlvError(TtlvErrorCode.UnknownName, `${here}: TTLV element needs a tag="0xhhhhhh"`);
  } else {
    tag = tagCode(name);
    if (tag === undefined) throw new TtlvError(TtlvErrorCode.UnknownName, `${here}: unknown tag name`);
  }
  const typeName = attrs.type ?? 'Structure';
  const type = typeCode(typeName);
  if (type === undefined) throw new TtlvError(TtlvErrorCode.BadType, `${here}: unknown type '${typeName}'`);
  for (const key of Object.keys(attrs))
    if (key !== 'type' && key !== 'value' && key !== 'tag') throw syntax(`${here}: unexpected attribute '${key}'`);
  const children = (node[name] as XmlNode[]).filter((c) => elementName(c) !== undefined);
  const text = (node[name] as XmlNode[]).filter((c) => c['#text'] !== undefined && c['#text'].trim() !== '');
  if (text.length > 0) throw syntax(`${here}: unexpected text content`);
  if (type === ItemType.Structure) {
    if (attrs.value !== undefined) throw syntax(`${here}: a structure has no value attribute`);
    const value: TtlvItem[] = [];
    let siblingName: string | undefined;
    for (const child of children) {
      const item = toItem(child, here, depth + 1, siblingName, opts);
      siblingName = attributeNameOf(item) ?? siblingName;
      value.push(item);
    }
    return { tag, type, value };
  }
  if (children.length > 0) throw syntax(`${here}: a ${typeName} has no child elements`);
  if (attrs.value === undefined) throw syntax(`${here}: missing value attribute`);
  const raw = unescape(attrs.value, where);
  if (type !== ItemType.TextString && PLACEHOLDER.test(raw)) {
    if (!opts.placeholders)
      throw new TtlvError(TtlvErrorCode.BadValue, `${here}: placeholder ${raw} needs a value (pass placeholders)`);
    try {
      return { tag, type, value: opts.placeholders.resolve(raw, type) } as TtlvItem;
    } catch (e) {
      throw new TtlvError(TtlvErrorCode.BadValue, `${here}: ${(e as Error).message}`);
    }
  }
  return { tag, type, value: parseValue(type, raw, valueTag(tag, attributeName), where) } as TtlvItem;
}

/** Reads every message (top-level item) of a KMIP XML document: the root's children, or the root itself. */
export function fromXml(text: string, opts: XmlOptions = {}): TtlvItem[] {
  const { validator, parser } = xmlReader();
  let valid: ReturnType<Fxp['XMLValidator']['validate']>;
  try {
    valid = validator.validate(text);
  } catch (e) {
    throw syntax(`XML: ${(e as Error).message}`);
  }
  if (valid !== true) throw syntax(`XML line ${valid.err.line}: ${valid.err.msg}`);
  let parsed: XmlNode[];
  try {
    parsed = parser.parse(text) as XmlNode[];
  } catch (e) {
    // The parser bounds nesting itself (before our depth check can run) and throws plain Errors.
    const message = (e as Error).message;
    throw new TtlvError(/nested/i.test(message) ? TtlvErrorCode.TooDeep : TtlvErrorCode.BadSyntax, `XML: ${message}`);
  }
  const nodes = parsed.filter((n) => elementName(n) !== undefined);
  if (nodes.length !== 1) throw syntax('an XML document has exactly one root element');
  const root = nodes[0];
  const rootName = elementName(root) as string;
  if (root[':@'] === undefined && tagCode(rootName) === undefined) {
    // A container such as <KMIP>: its child elements are the messages.
    return (root[rootName] as XmlNode[])
      .filter((n) => elementName(n) !== undefined)
      .map((n) => toItem(n, '', 1, undefined, opts));
  }
  return [toItem(root, '', 1, undefined, opts)];
}

function escape(text: string, tag: number): string {
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0) as number;
    if (!isXmlChar(code))
      throw new TtlvError(
        TtlvErrorCode.BadValue,
        `text with character U+${code.toString(16)} cannot be written as XML`,
        {
          tag,
        },
      );
    if (ch === '&') out += '&amp;';
    else if (ch === '<') out += '&lt;';
    else if (ch === '>') out += '&gt;';
    else if (ch === '"') out += '&quot;';
    else if (code < 0x20) out += `&#x${code.toString(16).toUpperCase()};`;
    else out += ch;
  }
  return out;
}

function write(
  item: TtlvItem,
  indent: string,
  attributeName: string | undefined,
  opts: XmlOptions,
  out: string[],
): void {
  const known = tagName(item.tag);
  const open = known ?? `TTLV tag="${tagLabel(item.tag)}"`;
  const close = known ?? 'TTLV';
  if (item.type === ItemType.Structure) {
    if (item.value.length === 0) {
      out.push(`${indent}<${open}></${close}>`);
      return;
    }
    out.push(`${indent}<${open}>`);
    let siblingName: string | undefined;
    for (const child of item.value) {
      write(child, indent + '\t', siblingName, opts, out);
      siblingName = attributeNameOf(child) ?? siblingName;
    }
    out.push(`${indent}</${close}>`);
    return;
  }
  const value = opts.placeholders?.nameOf(item) ?? formatValue(item, valueTag(item.tag, attributeName));
  out.push(`${indent}<${open} type="${TYPE_NAMES[item.type]}" value="${escape(value, item.tag)}"/>`);
}

/** One item as XML elements, tab-indented like the OASIS files. */
export function toXml(item: TtlvItem, opts: XmlOptions & { indent?: string } = {}): string {
  const out: string[] = [];
  write(item, opts.indent ?? '', undefined, opts, out);
  return out.join('\n') + '\n';
}

/** A document holding several messages under a `<KMIP>` root, as the test-case files do. */
export function toXmlDocument(items: TtlvItem[], opts: XmlOptions = {}): string {
  return `<KMIP>\n${items.map((i) => toXml(i, { ...opts, indent: '\t' })).join('')}</KMIP>\n`;
}
