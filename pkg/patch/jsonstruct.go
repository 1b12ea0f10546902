package patch

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// toStruct returns the proto3 JSON form of m (what protojson.Marshal writes) as a
// Struct, built by walking the message instead of writing and parsing JSON text:
// a patch value is built for every service on every full push, and the text round
// trip was most of the cost of translation. Timestamp, FieldMask and the Struct
// family go through protojson (they are rare in Envoy filter configs). ValidateFilterValue and ValidateClusterValue check the result
// against protojson's reading of it.
func toStruct(m proto.Message) (*structpb.Struct, error) {
	v, err := messageValue(m.ProtoReflect())
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", m, err)
	}
	s := v.GetStructValue()
	if s == nil {
		return nil, fmt.Errorf("encoding %T: JSON form is not an object", m)
	}
	return s, nil
}

func messageValue(m protoreflect.Message) (*structpb.Value, error) {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Any":
		return anyValue(m)
	case "google.protobuf.Duration":
		return durationValue(m)
	case "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		fd := m.Descriptor().Fields().ByName("value")
		return scalarValue(fd, m.Get(fd))
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
		"google.protobuf.Timestamp", "google.protobuf.FieldMask":
		return wellKnownValue(m)
	}
	fields, err := messageFields(m)
	if err != nil {
		return nil, err
	}
	return structpb.NewStructValue(&structpb.Struct{Fields: fields}), nil
}

// customJSON tells the well-known types whose JSON form is not an object of their
// fields; in an Any they go under "value". (Empty is an ordinary message.)
func customJSON(name protoreflect.FullName) bool {
	switch name {
	case "google.protobuf.Any", "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.FieldMask",
		"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		return true
	}
	return false
}

// messageFields are the populated fields of m by JSON name, as protojson writes them
// without EmitUnpopulated: Range visits exactly the fields protojson emits.
func messageFields(m protoreflect.Message) (map[string]*structpb.Value, error) {
	fields := map[string]*structpb.Value{}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		var out *structpb.Value
		out, err = fieldValue(fd, v)
		if err != nil {
			err = fmt.Errorf("%s: %w", fd.Name(), err)
			return false
		}
		fields[fd.JSONName()] = out
		return true
	})
	return fields, err
}

func fieldValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) (*structpb.Value, error) {
	switch {
	case fd.IsList():
		list := v.List()
		values := make([]*structpb.Value, list.Len())
		for i := range list.Len() {
			item, err := singularValue(fd, list.Get(i))
			if err != nil {
				return nil, err
			}
			values[i] = item
		}
		return structpb.NewListValue(&structpb.ListValue{Values: values}), nil
	case fd.IsMap():
		fields := map[string]*structpb.Value{}
		var err error
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			var item *structpb.Value
			if item, err = singularValue(fd.MapValue(), mv); err != nil {
				return false
			}
			fields[k.String()] = item
			return true
		})
		if err != nil {
			return nil, err
		}
		return structpb.NewStructValue(&structpb.Struct{Fields: fields}), nil
	default:
		return singularValue(fd, v)
	}
}

func singularValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) (*structpb.Value, error) {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return messageValue(v.Message())
	}
	return scalarValue(fd, v)
}

func scalarValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) (*structpb.Value, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return structpb.NewBoolValue(v.Bool()), nil
	case protoreflect.StringKind:
		return structpb.NewStringValue(v.String()), nil
	case protoreflect.BytesKind:
		return structpb.NewStringValue(base64.StdEncoding.EncodeToString(v.Bytes())), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return structpb.NewNumberValue(float64(v.Int())), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return structpb.NewNumberValue(float64(v.Uint())), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		// 64-bit integers are strings in proto3 JSON.
		return structpb.NewStringValue(strconv.FormatInt(v.Int(), 10)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return structpb.NewStringValue(strconv.FormatUint(v.Uint(), 10)), nil
	case protoreflect.FloatKind:
		return floatValue(v.Float(), 32), nil
	case protoreflect.DoubleKind:
		return floatValue(v.Float(), 64), nil
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return structpb.NewNullValue(), nil
		}
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return structpb.NewStringValue(string(ev.Name())), nil
		}
		return structpb.NewNumberValue(float64(v.Enum())), nil
	default:
		return nil, fmt.Errorf("unsupported kind %v", fd.Kind())
	}
}

// floatValue is the number protojson writes, as JSON parsing reads it back: a float
// is written with 32-bit precision, and the non-finite values are strings.
func floatValue(f float64, bits int) *structpb.Value {
	switch {
	case math.IsNaN(f):
		return structpb.NewStringValue("NaN")
	case math.IsInf(f, 1):
		return structpb.NewStringValue("Infinity")
	case math.IsInf(f, -1):
		return structpb.NewStringValue("-Infinity")
	}
	if bits == 32 {
		f, _ = strconv.ParseFloat(strconv.FormatFloat(f, 'g', -1, 32), 64)
	}
	return structpb.NewNumberValue(f)
}

// anyValue is the inner message's JSON with "@type" added; a well-known inner type
// with a special JSON form goes under "value".
func anyValue(m protoreflect.Message) (*structpb.Value, error) {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return wellKnownValue(m)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl())
	if err != nil {
		return nil, fmt.Errorf("typed config %q: %w", a.GetTypeUrl(), err)
	}
	inner := mt.New()
	if err := (proto.UnmarshalOptions{}).Unmarshal(a.GetValue(), inner.Interface()); err != nil {
		return nil, fmt.Errorf("typed config %q: %w", a.GetTypeUrl(), err)
	}
	return typedValue(inner, a.GetTypeUrl())
}

// typedValue is the JSON of a message inside an Any of the type URL: its own JSON with "@type"
// added, or under "value" for a well-known type with a special JSON form.
func typedValue(m protoreflect.Message, url string) (*structpb.Value, error) {
	v, err := messageValue(m)
	if err != nil {
		return nil, err
	}
	fields := v.GetStructValue().GetFields()
	if customJSON(m.Descriptor().FullName()) {
		fields = map[string]*structpb.Value{"value": v}
	}
	fields["@type"] = structpb.NewStringValue(url)
	return structpb.NewStructValue(&structpb.Struct{Fields: fields}), nil
}

// typeURL is what an Any of m names it by.
func typeURL(m protoreflect.Message) string {
	return "type.googleapis.com/" + string(m.Descriptor().FullName())
}

// durationValue writes seconds with 0, 3, 6 or 9 fractional digits, as protojson does.
func durationValue(m protoreflect.Message) (*structpb.Value, error) {
	d, ok := m.Interface().(*durationpb.Duration)
	if !ok || d.CheckValid() != nil {
		return wellKnownValue(m)
	}
	secs, nanos := d.GetSeconds(), d.GetNanos()
	sign := ""
	if secs < 0 || nanos < 0 {
		sign, secs, nanos = "-", -secs, -nanos
	}
	s := sign + strconv.FormatInt(secs, 10)
	if nanos != 0 {
		frac := fmt.Sprintf("%09d", nanos)
		switch {
		case strings.HasSuffix(frac, "000000"):
			frac = frac[:3]
		case strings.HasSuffix(frac, "000"):
			frac = frac[:6]
		}
		s += "." + frac
	}
	return structpb.NewStringValue(s + "s"), nil
}

// wellKnownValue takes protojson's word for the rare types this file does not
// write itself.
func wellKnownValue(m protoreflect.Message) (*structpb.Value, error) {
	raw, err := protojson.Marshal(m.Interface())
	if err != nil {
		return nil, err
	}
	v := &structpb.Value{}
	if err := protojson.Unmarshal(raw, v); err != nil {
		return nil, err
	}
	return v, nil
}
