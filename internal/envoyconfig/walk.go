package envoyconfig

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
)

const anyName protoreflect.FullName = "google.protobuf.Any"

// visitor receives every message of a tree. root is true for the top message
// and for each message unpacked from an Any: the points where a deep
// protoc-gen-validate ValidateAll starts.
type visitor interface {
	message(path string, m proto.Message, root bool)
	// badAny reports an Any whose content cannot be unpacked.
	badAny(path string, a *anypb.Any, err error)
	// deprecated reports a set field marked deprecated in its proto.
	deprecated(path string, fd protoreflect.FieldDescriptor)
}

// walk visits m and all messages below it, unpacking Anys through
// protoregistry.GlobalTypes. path names m in error messages.
func walk(path string, m proto.Message, root bool, v visitor) {
	if m == nil {
		return
	}
	v.message(path, m, root)
	rm := m.ProtoReflect()
	if !rm.IsValid() {
		return
	}
	var fields []protoreflect.FieldDescriptor
	rm.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		fields = append(fields, fd)
		return true
	})
	// Range order is unspecified; sort so reports are stable.
	sort.Slice(fields, func(i, j int) bool { return fields[i].Number() < fields[j].Number() })
	for _, fd := range fields {
		val := rm.Get(fd)
		fp := join(path, string(fd.Name()))
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			v.deprecated(fp, fd)
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				continue
			}
			var keys []string
			byKey := map[string]protoreflect.Message{}
			val.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				ks := k.String()
				keys = append(keys, ks)
				byKey[ks] = mv.Message()
				return true
			})
			sort.Strings(keys)
			for _, k := range keys {
				walkField(fmt.Sprintf("%s[%s]", fp, k), byKey[k], v)
			}
		case fd.IsList():
			if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
				continue
			}
			l := val.List()
			for i := range l.Len() {
				em := l.Get(i).Message()
				walkField(fmt.Sprintf("%s[%d]%s", fp, i, nameOf(em)), em, v)
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			walkField(fp, val.Message(), v)
		}
	}
}

// walkField descends into a message-typed field value, unpacking Anys.
func walkField(path string, rm protoreflect.Message, v visitor) {
	if rm.Descriptor().FullName() != anyName {
		walk(path, rm.Interface(), false, v)
		return
	}
	a, ok := rm.Interface().(*anypb.Any)
	if !ok {
		// A dynamic Any: round-trip it through the generated type.
		a = &anypb.Any{}
		b, err := proto.Marshal(rm.Interface())
		if err == nil {
			err = proto.Unmarshal(b, a)
		}
		if err != nil {
			v.badAny(path, a, err)
			return
		}
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		v.badAny(path, a, err)
		return
	}
	walk(fmt.Sprintf("%s<%s>", path, inner.ProtoReflect().Descriptor().Name()), inner, true, v)
}

// nameOf returns "(name)" for a message with a non-empty string field called
// name (listeners, clusters, filters, routes...), so reports say which one.
func nameOf(m protoreflect.Message) string {
	fd := m.Descriptor().Fields().ByName("name")
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return ""
	}
	if n := m.Get(fd).String(); n != "" {
		return "(" + n + ")"
	}
	return ""
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
