package simulate

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/callfsm/callfsm/call/event"
)

// The synthetic people, products and numbers calls are made of. They are
// plausible, not real: e-mail addresses are on example domains (RFC 2606)
// and phone numbers in ranges set aside for fiction where a country has one.

var firstNames = []string{
	"Aarav", "Vishal", "Priya", "Ananya", "Rohan", "Kavya", "Arjun", "Diya", "Ishaan", "Meera",
	"Rahul", "Sneha", "Vikram", "Pooja", "Aditya", "Neha", "Karan", "Divya", "Siddharth", "Riya",
	"Omar", "Fatima", "Yusuf", "Layla", "James", "Emily", "Oliver", "Sophie", "Liam", "Chloe",
	"Wei", "Mei", "Hiroshi", "Yuki", "Lucas", "Isabela", "Noah", "Amara", "Mateo", "Zara",
}

var lastNames = []string{
	"Sharma", "Verma", "Iyer", "Nair", "Menon", "Reddy", "Patel", "Shah", "Gupta", "Singh",
	"Kapoor", "Joshi", "Rao", "Das", "Banerjee", "Pillai", "Mehta", "Chopra", "Khan", "Bose",
	"Al-Farsi", "Haddad", "Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Tan", "Lim",
	"Wong", "Sato", "Tanaka", "Silva", "Costa", "Okafor", "Mensah", "Garcia", "Rossi", "Novak",
}

var emailDomains = []string{"example.com", "example.org", "example.net", "mail.example.com", "inbox.example.org"}

// agents are the sellers placing the calls: a fixed team of 24.
var agents = func() []event.AgentInfo {
	names := []string{
		"Sasha", "Aiswarya Menon", "Deepak Kumar", "Farah Siddiqui", "Gaurav Jain", "Harini Subramanian",
		"Imran Qureshi", "Jaya Krishnan", "Kunal Desai", "Lakshmi Pillai", "Manish Arora", "Nisha Agarwal",
		"Pranav Kulkarni", "Ritu Saxena", "Sameer Bhatt", "Tanvi Malhotra", "Uday Shetty", "Varun Ghosh",
		"Yamini Rao", "Zoya Mirza", "Anil Thomas", "Bhavna Sethi", "Chetan Naidu", "Esha Dutta",
	}
	out := make([]event.AgentInfo, len(names))
	for i, n := range names {
		local := strings.ToLower(strings.ReplaceAll(n, " ", "."))
		out[i] = event.AgentInfo{Name: n, Email: local + "@seller.example.com"}
	}
	return out
}()

// products are what the calls are about.
var products = func() []event.Product {
	names := []string{
		"Wireless Headphones", "Bluetooth Speaker", "Smart Watch", "Fitness Band", "Noise Cancelling Earbuds",
		"Mechanical Keyboard", "Gaming Mouse", "4K Monitor", "Laptop Stand", "USB-C Hub",
		"Portable Charger", "Action Camera", "Mirrorless Camera", "Tripod", "Ring Light",
		"Air Purifier", "Robot Vacuum", "Espresso Machine", "Air Fryer", "Blender",
		"Yoga Mat", "Running Shoes", "Backpack", "Desk Lamp",
	}
	out := make([]event.Product, len(names))
	for i, n := range names {
		slug := strings.ToLower(strings.ReplaceAll(n, " ", "-"))
		out[i] = event.Product{Name: n, ID: "SKU-" + strconv.Itoa(101+i*7), URL: "https://example.com/products/" + slug}
	}
	return out
}()

// countries: a calling code, its share of customers in per mille, and how
// to make a national number of it.
var countries = []struct {
	code    string
	permill int
	phone   func(b []byte, rng *rand.Rand) []byte
}{
	{"+91", 620, func(b []byte, rng *rand.Rand) []byte { // India: 10 digits from 6-9
		b = append(b, byte('6'+rng.IntN(4)))
		return appendDigits(b, rng, 9)
	}},
	{"+1", 120, func(b []byte, rng *rand.Rand) []byte { // NANP: 555-01XX is for fiction
		b = appendDigits(append(b, byte('2'+rng.IntN(8))), rng, 2)
		return appendDigits(append(b, "55501"...), rng, 2)
	}},
	{"+44", 80, func(b []byte, rng *rand.Rand) []byte { // UK: 07700 900xxx is for drama
		return appendDigits(append(b, "7700900"...), rng, 3)
	}},
	{"+971", 70, func(b []byte, rng *rand.Rand) []byte { // UAE mobile: 5X XXX XXXX
		return appendDigits(append(b, '5'), rng, 8)
	}},
	{"+65", 60, func(b []byte, rng *rand.Rand) []byte { // Singapore mobile: 8 or 9, 8 digits
		return appendDigits(append(b, byte('8'+rng.IntN(2))), rng, 7)
	}},
	{"+61", 50, func(b []byte, rng *rand.Rand) []byte { // Australia: 0491 570 xxx is for fiction
		return appendDigits(append(b, "491570"...), rng, 3)
	}},
}

func appendDigits(b []byte, rng *rand.Rand, n int) []byte {
	for range n {
		b = append(b, byte('0'+rng.IntN(10)))
	}
	return b
}

// lowerFirst and lowerLast are the names as they go into e-mail addresses.
var lowerFirst, lowerLast = lowerAll(firstNames), lowerAll(lastNames)

func lowerAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(strings.ReplaceAll(n, "-", ""))
	}
	return out
}

// appendUUID appends a version 4 UUID made of the generator's next 128 bits.
func appendUUID(b []byte, rng *rand.Rand) []byte {
	const hex = "0123456789abcdef"
	hi, lo := rng.Uint64(), rng.Uint64()
	hi = hi&^0xf000 | 0x4000     // version 4
	lo = lo&^(0xc<<60) | 0x8<<60 // RFC 4122 variant
	var raw [16]byte
	for i := range 8 {
		raw[i] = byte(hi >> (56 - 8*i))
		raw[8+i] = byte(lo >> (56 - 8*i))
	}
	for i, x := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return b
}
