// Command gen generates amqpwire's method structs, constants and basic
// properties from the AMQP 0-9-1 specification XML.
//
// Usage (through go generate in amqpwire):
//
//	go run ./internal/gen -spec ../../shared/amqp/amqp0-9-1.extended.xml -out spec_gen.go
//
// The output is deterministic: classes, methods and fields keep the order of
// the XML, constants are sorted by value, and the text goes through go/format.
package main

import (
	"bytes"
	"encoding/xml"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"sort"
	"strings"
	"text/template"
)

// classes lists the classes Warren implements, by XML name.
var classes = map[string]bool{
	"connection": true, "channel": true, "exchange": true, "queue": true,
	"basic": true, "confirm": true, "tx": true,
}

// fieldNames overrides Go names derived from XML names where the plain
// conversion would clash with the Method interface or read poorly.
var fieldNames = map[string]string{
	"class-id":  "FailedClassID",  // connection.close, channel.close: ClassID() is a method
	"method-id": "FailedMethodID", // likewise MethodID()
	"nowait":    "NoWait",         // confirm.select spells it without the dash
}

// propertyNames renames basic properties: the XML calls the 14th property
// "reserved"; RabbitMQ and its clients call it cluster-id.
var propertyNames = map[string]string{
	"reserved": "cluster-id",
}

type xmlSpec struct {
	Constants []xmlConstant `xml:"constant"`
	Domains   []xmlDomain   `xml:"domain"`
	Classes   []xmlClass    `xml:"class"`
}

type xmlConstant struct {
	Name  string `xml:"name,attr"`
	Value int    `xml:"value,attr"`
	Class string `xml:"class,attr"`
}

type xmlDomain struct {
	Name string `xml:"name,attr"`
	Type string `xml:"type,attr"`
}

type xmlClass struct {
	Name    string      `xml:"name,attr"`
	Index   int         `xml:"index,attr"`
	Fields  []xmlField  `xml:"field"`
	Methods []xmlMethod `xml:"method"`
}

type xmlMethod struct {
	Name        string     `xml:"name,attr"`
	Index       int        `xml:"index,attr"`
	Synchronous int        `xml:"synchronous,attr"`
	Content     int        `xml:"content,attr"`
	Fields      []xmlField `xml:"field"`
}

type xmlField struct {
	Name     string `xml:"name,attr"`
	Domain   string `xml:"domain,attr"`
	Type     string `xml:"type,attr"`
	Reserved int    `xml:"reserved,attr"`
}

// Constant is a spec constant as the template sees it.
type Constant struct {
	Name    string // XML name, e.g. "not-found"
	GoName  string // e.g. NotFound
	Reply   string // RabbitMQ style, e.g. NOT_FOUND
	Value   int
	Class   string // "", "soft-error" or "hard-error"
	IsReply bool
}

// Field is a method argument or a basic property.
type Field struct {
	Name   string
	GoName string
	Type   string // AMQP type: bit, octet, short, long, longlong, shortstr, longstr, table, timestamp
	GoType string
	Flag   uint16 // property flag bit (properties only)
}

// Method is one class method.
type Method struct {
	Class   *Class
	Name    string // "publish"
	Full    string // "basic.publish"
	GoName  string // BasicPublish
	Const   string // MethodBasicPublish
	Index   int
	Sync    bool
	Content bool
	Fields  []*Field
	Encode  string // Go statements appending the arguments to dst
	Decode  string // Go statements reading the arguments from r
}

// Class is one spec class.
type Class struct {
	Name    string
	GoName  string
	Const   string
	Index   int
	Methods []*Method
	Props   []*Field
}

func main() {
	specPath := flag.String("spec", "", "path to amqp0-9-1.extended.xml")
	out := flag.String("out", "spec_gen.go", "output file")
	flag.Parse()
	if *specPath == "" {
		log.Fatal("gen: -spec is required")
	}
	raw, err := os.ReadFile(*specPath)
	if err != nil {
		log.Fatalf("gen: %v", err)
	}
	src, err := generate(raw)
	if err != nil {
		log.Fatalf("gen: %v", err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatalf("gen: %v", err)
	}
}

func generate(raw []byte) ([]byte, error) {
	var s xmlSpec
	if err := xml.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("parse spec: %w", err)
	}
	domains := map[string]string{}
	for _, d := range s.Domains {
		domains[d.Name] = d.Type
	}
	typeOf := func(f xmlField) (string, error) {
		t := f.Type
		if t == "" {
			t = domains[f.Domain]
		}
		if _, ok := goTypes[t]; !ok {
			return "", fmt.Errorf("field %q: unknown type %q (domain %q)", f.Name, t, f.Domain)
		}
		return t, nil
	}

	var consts []*Constant
	for _, c := range s.Constants {
		consts = append(consts, &Constant{
			Name:    c.Name,
			GoName:  camel(c.Name),
			Reply:   strings.ToUpper(strings.ReplaceAll(c.Name, "-", "_")),
			Value:   c.Value,
			Class:   c.Class,
			IsReply: c.Class != "" || c.Name == "reply-success",
		})
	}
	sort.SliceStable(consts, func(i, j int) bool {
		if consts[i].IsReply != consts[j].IsReply {
			return !consts[i].IsReply
		}
		return consts[i].Value < consts[j].Value
	})

	var cls []*Class
	var methods []*Method
	var props []*Field
	for _, xc := range s.Classes {
		if !classes[xc.Name] {
			continue
		}
		c := &Class{Name: xc.Name, GoName: camel(xc.Name), Const: "Class" + camel(xc.Name), Index: xc.Index}
		for _, xm := range xc.Methods {
			m := &Method{
				Class:   c,
				Name:    xm.Name,
				Full:    xc.Name + "." + xm.Name,
				GoName:  c.GoName + camel(xm.Name),
				Index:   xm.Index,
				Sync:    xm.Synchronous == 1,
				Content: xm.Content == 1,
			}
			m.Const = "Method" + m.GoName
			for _, xf := range xm.Fields {
				t, err := typeOf(xf)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", m.Full, err)
				}
				name := fieldNames[xf.Name]
				if name == "" {
					name = camel(xf.Name)
				}
				m.Fields = append(m.Fields, &Field{Name: xf.Name, GoName: name, Type: t, GoType: goTypes[t]})
			}
			m.Encode, m.Decode = codecs(m.Fields)
			c.Methods = append(c.Methods, m)
			methods = append(methods, m)
		}
		if xc.Name == "basic" {
			if len(xc.Fields) > 15 {
				return nil, fmt.Errorf("basic: %d properties do not fit one flag word", len(xc.Fields))
			}
			for i, xf := range xc.Fields {
				t, err := typeOf(xf)
				if err != nil {
					return nil, fmt.Errorf("basic properties: %w", err)
				}
				name := xf.Name
				if n, ok := propertyNames[name]; ok {
					name = n
				}
				props = append(props, &Field{Name: name, GoName: camel(name), Type: t, GoType: goTypes[t], Flag: 1 << (15 - i)})
			}
			c.Props = props
		}
		cls = append(cls, c)
	}
	if props == nil {
		return nil, fmt.Errorf("spec has no basic properties")
	}

	var buf bytes.Buffer
	err := tmpl.Execute(&buf, map[string]any{
		"Constants": consts,
		"Classes":   cls,
		"Methods":   methods,
		"Props":     props,
	})
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	src, err := format.Source(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("format: %w\n%s", err, buf.Bytes())
	}
	return src, nil
}

var goTypes = map[string]string{
	"bit":       "bool",
	"octet":     "uint8",
	"short":     "uint16",
	"long":      "uint32",
	"longlong":  "uint64",
	"shortstr":  "string",
	"longstr":   "string",
	"table":     "Table",
	"timestamp": "time.Time",
}

// camel turns "routing-key" into "RoutingKey"; an "id" word becomes "ID".
func camel(s string) string {
	var b strings.Builder
	for _, w := range strings.Split(s, "-") {
		if w == "" {
			continue
		}
		if w == "id" {
			b.WriteString("ID")
			continue
		}
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}

// codecs returns the encode and decode statements for a method's arguments.
// Consecutive bit fields share one octet, the first in its low-order bit,
// and a ninth consecutive bit starts a new octet.
func codecs(fields []*Field) (enc, dec string) {
	var e, d strings.Builder
	for i := 0; i < len(fields); {
		f := fields[i]
		if f.Type == "bit" {
			j := i
			for j < len(fields) && fields[j].Type == "bit" && j-i < 8 {
				j++
			}
			e.WriteString("{\nvar bits uint8\n")
			d.WriteString("{\nbits := r.Bits()\n")
			for k := i; k < j; k++ {
				mask := fmt.Sprintf("0x%02x", 1<<(k-i))
				fmt.Fprintf(&e, "if m.%s {\nbits |= %s\n}\n", fields[k].GoName, mask)
				fmt.Fprintf(&d, "m.%s = bits&%s != 0\n", fields[k].GoName, mask)
			}
			e.WriteString("dst = append(dst, bits)\n}\n")
			d.WriteString("}\n")
			i = j
			continue
		}
		switch f.Type {
		case "octet":
			fmt.Fprintf(&e, "dst = append(dst, m.%s)\n", f.GoName)
			fmt.Fprintf(&d, "m.%s = r.Octet()\n", f.GoName)
		case "short":
			fmt.Fprintf(&e, "dst = binary.BigEndian.AppendUint16(dst, m.%s)\n", f.GoName)
			fmt.Fprintf(&d, "m.%s = r.Short()\n", f.GoName)
		case "long":
			fmt.Fprintf(&e, "dst = binary.BigEndian.AppendUint32(dst, m.%s)\n", f.GoName)
			fmt.Fprintf(&d, "m.%s = r.Long()\n", f.GoName)
		case "longlong":
			fmt.Fprintf(&e, "dst = binary.BigEndian.AppendUint64(dst, m.%s)\n", f.GoName)
			fmt.Fprintf(&d, "m.%s = r.LongLong()\n", f.GoName)
		case "shortstr":
			fmt.Fprintf(&e, "dst = AppendShortStr(dst, m.%s)\n", f.GoName)
			fmt.Fprintf(&d, "m.%s = r.shortStrReuse(m.%s)\n", f.GoName, f.GoName)
		case "longstr":
			fmt.Fprintf(&e, "dst = AppendLongStr(dst, m.%s)\n", f.GoName)
			fmt.Fprintf(&d, "m.%s = r.longStrReuse(m.%s)\n", f.GoName, f.GoName)
		case "table":
			fmt.Fprintf(&e, "dst = AppendTable(dst, m.%s)\n", f.GoName)
			fmt.Fprintf(&d, "m.%s = r.Table()\n", f.GoName)
		default:
			panic("gen: no codec for " + f.Type)
		}
		i++
	}
	return e.String(), d.String()
}

// kind maps an AMQP type to the propKind constant in amqpwire.
func kind(t string) string {
	return "kind" + camel(t)
}

// presence is the Go expression telling a property holds a non-zero value.
func presence(f *Field) string {
	switch f.GoType {
	case "string":
		return fmt.Sprintf("p.%s != \"\"", f.GoName)
	case "Table":
		return fmt.Sprintf("len(p.%s) != 0", f.GoName)
	case "time.Time":
		return fmt.Sprintf("!p.%s.IsZero()", f.GoName)
	default:
		return fmt.Sprintf("p.%s != 0", f.GoName)
	}
}

func propEncode(f *Field) string {
	switch f.Type {
	case "shortstr":
		return fmt.Sprintf("dst = AppendShortStr(dst, p.%s)", f.GoName)
	case "longstr":
		return fmt.Sprintf("dst = AppendLongStr(dst, p.%s)", f.GoName)
	case "table":
		return fmt.Sprintf("dst = AppendTable(dst, p.%s)", f.GoName)
	case "octet":
		return fmt.Sprintf("dst = append(dst, p.%s)", f.GoName)
	case "short":
		return fmt.Sprintf("dst = binary.BigEndian.AppendUint16(dst, p.%s)", f.GoName)
	case "long":
		return fmt.Sprintf("dst = binary.BigEndian.AppendUint32(dst, p.%s)", f.GoName)
	case "longlong":
		return fmt.Sprintf("dst = binary.BigEndian.AppendUint64(dst, p.%s)", f.GoName)
	case "timestamp":
		return fmt.Sprintf("dst = appendTimestamp(dst, p.%s)", f.GoName)
	}
	panic("gen: no property encoder for " + f.Type)
}

func propDecode(f *Field) string {
	switch f.Type {
	case "shortstr":
		return fmt.Sprintf("p.%s = r.ShortStr()", f.GoName)
	case "longstr":
		return fmt.Sprintf("p.%s = r.LongStr()", f.GoName)
	case "table":
		return fmt.Sprintf("p.%s = r.Table()", f.GoName)
	case "octet":
		return fmt.Sprintf("p.%s = r.Octet()", f.GoName)
	case "short":
		return fmt.Sprintf("p.%s = r.Short()", f.GoName)
	case "long":
		return fmt.Sprintf("p.%s = r.Long()", f.GoName)
	case "longlong":
		return fmt.Sprintf("p.%s = r.LongLong()", f.GoName)
	case "timestamp":
		return fmt.Sprintf("p.%s = r.Timestamp()", f.GoName)
	}
	panic("gen: no property decoder for " + f.Type)
}

func lowerFirst(s string) string { return strings.ToLower(s[:1]) + s[1:] }

var tmpl = template.Must(template.New("spec").Funcs(template.FuncMap{
	"kind":       kind,
	"presence":   presence,
	"propEncode": propEncode,
	"propDecode": propDecode,
	"lower":      lowerFirst,
	"hex":        func(v uint16) string { return fmt.Sprintf("0x%04x", v) },
}).Parse(`// Code generated by amqpwire/internal/gen from amqp0-9-1.extended.xml; DO NOT EDIT.

package amqpwire

import (
	"encoding/binary"
	"time"
)

// Frame types and sizes from the specification.
const (
{{- range .Constants}}{{if not .IsReply}}
	// {{.GoName}} is the spec constant {{.Name}}.
	{{.GoName}} = {{.Value}}
{{- end}}{{end}}
)

// Reply codes from the specification. Codes of class soft-error close a
// channel; codes of class hard-error close the connection.
const (
{{- range .Constants}}{{if .IsReply}}
	// {{.GoName}} is reply code {{.Value}} {{.Reply}}{{if .Class}} ({{.Class}}){{end}}.
	{{.GoName}} uint16 = {{.Value}}
{{- end}}{{end}}
)

// ReplyText returns the RabbitMQ-style name of a reply code, such as
// "NOT_FOUND" for 404, or "" for a code the specification does not define.
func ReplyText(code uint16) string {
	switch code {
{{- range .Constants}}{{if .IsReply}}
	case {{.GoName}}:
		return "{{.Reply}}"
{{- end}}{{end}}
	}
	return ""
}

// isHardError reports whether code is a hard-error (connection) code. Codes
// the specification does not define count as hard.
func isHardError(code uint16) bool {
	switch code {
{{- range .Constants}}{{if .IsReply}}{{if ne .Class "hard-error"}}
	case {{.GoName}}:
		return false
{{- end}}{{end}}{{end}}
	}
	return true
}

// Class ids.
const (
{{- range .Classes}}
	// {{.Const}} is the id of class {{.Name}}.
	{{.Const}} uint16 = {{.Index}}
{{- end}}
)

// Method ids, unique within their class.
const (
{{- range .Methods}}
	// {{.Const}} is the method id of {{.Full}}.
	{{.Const}} uint16 = {{.Index}}
{{- end}}
)
{{range .Methods}}
// {{.GoName}} is the {{.Full}} method ({{.Class.Index}}, {{.Index}}).
type {{.GoName}} struct {
{{- range .Fields}}
	{{.GoName}} {{.GoType}} // {{.Name}}
{{- end}}
}

// ClassID returns {{.Class.Const}}.
func (*{{.GoName}}) ClassID() uint16 { return {{.Class.Const}} }

// MethodID returns {{.Const}}.
func (*{{.GoName}}) MethodID() uint16 { return {{.Const}} }

// Name returns "{{.Full}}".
func (*{{.GoName}}) Name() string { return "{{.Full}}" }

// Synchronous reports whether {{.Full}} expects a reply.
func (*{{.GoName}}) Synchronous() bool { return {{.Sync}} }

// HasContent reports whether {{.Full}} is followed by a content header and body.
func (*{{.GoName}}) HasContent() bool { return {{.Content}} }

// AppendTo appends the method payload (class id, method id, arguments) to dst.
func (m *{{.GoName}}) AppendTo(dst []byte) []byte {
	dst = append(dst, {{.Class.Index}}>>8, {{.Class.Index}}&0xff, {{.Index}}>>8, {{.Index}}&0xff)
	{{.Encode -}}
	return dst
}

{{if .Fields -}}
func (m *{{.GoName}}) read(r *Reader) {
	{{.Decode -}}
}
{{- else -}}
func (*{{.GoName}}) read(*Reader) {}
{{- end}}
{{end}}

// methodKeys lists every generated method as class id << 16 | method id, in
// specification order.
var methodKeys = [...]uint32{
{{- range .Methods}}
	uint32({{.Class.Const}})<<16 | uint32({{.Const}}),
{{- end}}
}

// newMethod returns a new zero method for the ids, or nil if unknown.
func newMethod(classID, methodID uint16) Method {
	switch uint32(classID)<<16 | uint32(methodID) {
{{- range .Methods}}
	case uint32({{.Class.Const}})<<16 | uint32({{.Const}}):
		return new({{.GoName}})
{{- end}}
	}
	return nil
}

// methodName returns the "class.method" name for the ids, or "" if unknown.
func methodName(classID, methodID uint16) string {
	switch uint32(classID)<<16 | uint32(methodID) {
{{- range .Methods}}
	case uint32({{.Class.Const}})<<16 | uint32({{.Const}}):
		return "{{.Full}}"
{{- end}}
	}
	return ""
}

// methodSlots holds one reusable struct per method type for MethodDecoder.
type methodSlots struct {
{{- range .Methods}}
	{{lower .GoName}} {{.GoName}}
{{- end}}
}

// slot returns the reusable struct for the ids, or nil if unknown.
func (s *methodSlots) slot(classID, methodID uint16) methodReader {
	switch uint32(classID)<<16 | uint32(methodID) {
{{- range .Methods}}
	case uint32({{.Class.Const}})<<16 | uint32({{.Const}}):
		return &s.{{lower .GoName}}
{{- end}}
	}
	return nil
}

// Basic property flag bits, in the order the properties follow the flags.
const (
{{- range .Props}}
	// Flag{{.GoName}} marks the {{.Name}} property as present.
	Flag{{.GoName}} uint16 = {{hex .Flag}}
{{- end}}
	// flagsKnown is the union of all property flags.
	flagsKnown = {{range $i, $p := .Props}}{{if $i}} | {{end}}Flag{{$p.GoName}}{{end}}
)

// propertyKinds lists the type of each property, highest flag bit first.
var propertyKinds = [...]propKind{
{{- range .Props}}
	{{kind .Type}}, // {{.Name}}
{{- end}}
}

// Properties holds the basic content-header properties. Flags records which
// properties were present when decoded; when encoding, a property is written
// if its flag is set or its value is non-zero.
type Properties struct {
	Flags uint16 // Flag* bits of the properties present
{{- range .Props}}
	{{.GoName}} {{.GoType}} // {{.Name}}
{{- end}}
}

// present returns the flags of the properties AppendTo writes.
func (p *Properties) present() uint16 {
	flags := p.Flags & flagsKnown
{{- range .Props}}
	if {{presence .}} {
		flags |= Flag{{.GoName}}
	}
{{- end}}
	return flags
}

// appendList appends the property list selected by flags.
func (p *Properties) appendList(dst []byte, flags uint16) []byte {
{{- range .Props}}
	if flags&Flag{{.GoName}} != 0 {
		{{propEncode .}}
	}
{{- end}}
	return dst
}

// readList reads the property list selected by flags.
func (p *Properties) readList(r *Reader, flags uint16) {
{{- range .Props}}
	if flags&Flag{{.GoName}} != 0 {
		{{propDecode .}}
	}
{{- end}}
}
`))
